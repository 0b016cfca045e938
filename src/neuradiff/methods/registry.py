"""The methods by name: how to fit each one, and how to load a saved one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from neuradiff.core.errors import NeuradiffError
from neuradiff.io.saved import SavedModel, read_model_folder
from neuradiff.methods.base import FittedMethod
from neuradiff.methods.neuradiff import NeuraDiffModel, fit_neuradiff
from neuradiff.methods.physics_only import PhysicsOnlyModel, fit_physics_only
from neuradiff.methods.residual import ResidualModel, fit_residual
from neuradiff.methods.supervised import SupervisedModel, fit_supervised
from neuradiff.methods.surrogate import SurrogateModel, fit_surrogate

#: Method name → fitted-model class (each has ``from_saved``).
MODEL_TYPES: dict[str, Any] = {
    "neuradiff": NeuraDiffModel,
    "supervised": SupervisedModel,
    "surrogate": SurrogateModel,
    "physics_only": PhysicsOnlyModel,
    "residual": ResidualModel,
}

#: Method name → fit function. All but the surrogate take ``(TrainingData, FitConfig, *, checkpoint_path, resume,
#: progress)``; the surrogate takes ``(eta maps, recognition net, SurrogateConfig, *, progress)``.
FITS: dict[str, Callable[..., Any]] = {
    "neuradiff": fit_neuradiff,
    "supervised": fit_supervised,
    "surrogate": fit_surrogate,
    "physics_only": fit_physics_only,
    "residual": fit_residual,
}


def from_saved(saved: SavedModel) -> FittedMethod:
    """The fitted method of a model folder's contents, by the method named in its ``model.json``."""
    try:
        kind = MODEL_TYPES[saved.method]
    except KeyError:
        raise NeuradiffError(
            f"unknown method {saved.method!r} in model.json; known: {', '.join(MODEL_TYPES)}"
        ) from None
    return kind.from_saved(saved)


def load_model(folder: str | Path) -> FittedMethod:
    """Load any model folder written by ``neuradiff fit`` or a method's ``save``.

    Examples
    --------
    >>> model = load_model("my-demo/model")  # doctest: +SKIP
    >>> model.parameters().E_v  # doctest: +SKIP
    """
    return from_saved(read_model_folder(folder))
