"""Synthetic in-situ TEM data whose physics is known: run the void model (:mod:`~neuradiff.synth.simulation`),
render frames (:mod:`~neuradiff.synth.render`), annotate part of them (:mod:`~neuradiff.synth.annotate`) and put
it together as datasets (:mod:`~neuradiff.synth.datasets`)."""
