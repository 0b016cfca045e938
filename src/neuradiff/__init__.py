"""neuradiff: track voids in in-situ TEM videos and learn the phase-field physics that moves them.

The Python API (:mod:`neuradiff.api`) is available at the top level::

    import neuradiff as nd

    sim = nd.simulate()  # a synthetic video whose physics is known
    fitted = nd.fit(sim)  # recognition net + physics, learned jointly
    tracked = nd.track(sim, fitted)  # eta, masks and void tables of every frame
    fc = nd.forecast(fitted, sim, frame=0, steps=59)

Note that ``neuradiff.measure`` is the function :func:`neuradiff.api.measure`; the measurement room stays importable
as ``from neuradiff.measure.voids import ...``.
"""

from neuradiff._version import __version__
from neuradiff.api import (
    FittedModel,
    MeasuredVoids,
    SimulatedVideo,
    TrackedVideo,
    VoidForecast,
    fit,
    forecast,
    load,
    measure,
    read_video,
    simulate,
    track,
)

__all__ = [
    "FittedModel",
    "MeasuredVoids",
    "SimulatedVideo",
    "TrackedVideo",
    "VoidForecast",
    "__version__",
    "fit",
    "forecast",
    "load",
    "measure",
    "read_video",
    "simulate",
    "track",
]
