"""neuradiff: track voids in in-situ TEM videos and learn the phase-field physics that moves them.

The Python API (:mod:`neuradiff.api`) is available at the top level::

    import neuradiff as nd

    sim = nd.simulate()  # a synthetic video whose physics is known
    fitted = nd.fit(sim)  # recognition net + physics, learned jointly
    tracked = nd.track(sim, fitted)  # eta, masks and void tables of every frame
    fc = nd.forecast(fitted, sim, frame=0, steps=59)

``neuradiff.measure`` is both the measurement room (``neuradiff.measure.voids``, ...) and, called, the API's
:func:`neuradiff.api.measure`.
"""

import sys
import types

from neuradiff import measure
from neuradiff._version import __version__
from neuradiff.api import (
    FittedModel,
    LabelScheme,
    MeasuredVoids,
    SimulatedVideo,
    TrackedVideo,
    VoidForecast,
    fit,
    forecast,
    load,
    read_video,
    simulate,
    track,
)
from neuradiff.api import measure as _measure


class _CallableRoom(types.ModuleType):
    """The ``neuradiff.measure`` package, callable as :func:`neuradiff.api.measure` (its submodules stay
    importable: ``import neuradiff.measure.voids``)."""

    __call__ = staticmethod(_measure)


sys.modules["neuradiff.measure"].__class__ = _CallableRoom

__all__ = [
    "FittedModel",
    "LabelScheme",
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
