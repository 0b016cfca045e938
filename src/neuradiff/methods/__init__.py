"""The methods that learn from a video, one module each, behind one interface (:class:`FittedMethod`).

========================  =====================================================================================
``neuradiff``             recognition net and physics trained jointly (``neuradiff fit``)
``supervised``            the recognition net trained on the annotations alone (tracking only)
``surrogate``             autoregressive UNet, next eta map from the current one, rolled out from a start frame
``physics_only``          differentiable physics without a net: simulate annotation → next annotation
``residual``              physics-informed residual fit: net + parameters, equations satisfied frame to frame
========================  =====================================================================================

Every method is trained by :class:`neuradiff.training.TrainingLoop`; :data:`MODEL_TYPES` and :data:`FITS` are
the tables by name. To add a method: a module here with an objective (see :class:`neuradiff.training.Objective`),
a fitted-model class implementing :class:`FittedMethod`, and an entry in both tables.
"""

from neuradiff.methods.base import FitResult, FittedMethod, Forecast, fitted_masks, place_model, run_objective
from neuradiff.methods.forecast import simulate_forward
from neuradiff.methods.neuradiff import NeuraDiffModel, NeuraDiffObjective, fit_neuradiff
from neuradiff.methods.physics_only import PhysicsOnlyModel, fit_physics_only, state_from_annotation
from neuradiff.methods.registry import FITS, MODEL_TYPES, from_saved, load_model
from neuradiff.methods.residual import ResidualModel, fit_residual, midpoint_residual
from neuradiff.methods.supervised import SupervisedModel, fit_supervised
from neuradiff.methods.surrogate import SurrogateConfig, SurrogateModel, fit_surrogate, surrogate_rollout

__all__ = [
    "FITS",
    "MODEL_TYPES",
    "FitResult",
    "FittedMethod",
    "Forecast",
    "NeuraDiffModel",
    "NeuraDiffObjective",
    "PhysicsOnlyModel",
    "ResidualModel",
    "SupervisedModel",
    "SurrogateConfig",
    "SurrogateModel",
    "fit_neuradiff",
    "fit_physics_only",
    "fit_residual",
    "fit_supervised",
    "fit_surrogate",
    "fitted_masks",
    "from_saved",
    "load_model",
    "midpoint_residual",
    "place_model",
    "run_objective",
    "simulate_forward",
    "state_from_annotation",
    "surrogate_rollout",
]
