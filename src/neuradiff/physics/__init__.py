"""The differentiable phase-field engine: pure functions on states ``[batch, field, H, W]``, no I/O.

- :mod:`~neuradiff.physics.operators`: Laplacian, flux-form divergence, spectral symbols;
- :mod:`~neuradiff.physics.void_model`: the void-kinetics model (``VoidModel``, ``VoidParameters``);
- :mod:`~neuradiff.physics.validation_models`: PFHub benchmark 1 and double-well Allen-Cahn;
- :mod:`~neuradiff.physics.integrators`: explicit Euler with a stability guard, its IMEX variant, semi-implicit
  spectral;
- :mod:`~neuradiff.physics.etd`: exponential time differencing on periodic grids (the split, ETDRK2 steps);
- :mod:`~neuradiff.physics.exponential`: the adaptive driver ``adaptive_spectral`` (embedded error estimate,
  step-size control, exact output times);
- :mod:`~neuradiff.physics.rollout`: many steps, diagnostics, gradient checkpointing;
- :mod:`~neuradiff.physics.simulator`: ``Simulator``, the frozen numerics of a learned simulator (steps per frame);
- :mod:`~neuradiff.physics.forcing`: deterministic, seeded or recorded random numbers;
- :mod:`~neuradiff.physics.parameters`: typed parameter sets and their learnable form.
"""

from neuradiff.physics.exponential import AdaptiveTrajectory, adaptive_spectral
from neuradiff.physics.forcing import NoForcing, RandomForcing, RecordedForcing
from neuradiff.physics.initial import (
    carried_state,
    initial_condition,
    matrix_state,
    several_voids,
    single_void,
    supersaturated,
    void_disks,
)
from neuradiff.physics.integrators import (
    INTEGRATORS,
    Integrator,
    etdrk2_spectral,
    explicit_euler,
    explicit_stability_limit,
    get_integrator,
    imex_euler,
    semi_implicit_spectral,
)
from neuradiff.physics.model import PhaseFieldModel
from neuradiff.physics.operators import flux_divergence, laplacian
from neuradiff.physics.parameters import LearnableParameters, ParameterSet
from neuradiff.physics.rollout import Trajectory, rollout
from neuradiff.physics.simulator import Simulator
from neuradiff.physics.validation_models import (
    AllenCahnModel,
    AllenCahnParameters,
    SpinodalModel,
    SpinodalParameters,
    pfhub1_initial_condition,
)
from neuradiff.physics.void_model import (
    ConservativeVoidModel,
    ReferenceVoidModel,
    VoidModel,
    VoidParameters,
    equilibrium_vacancy_fraction,
)

__all__ = [
    "INTEGRATORS",
    "AdaptiveTrajectory",
    "AllenCahnModel",
    "AllenCahnParameters",
    "ConservativeVoidModel",
    "Integrator",
    "LearnableParameters",
    "NoForcing",
    "ParameterSet",
    "PhaseFieldModel",
    "RandomForcing",
    "RecordedForcing",
    "ReferenceVoidModel",
    "Simulator",
    "SpinodalModel",
    "SpinodalParameters",
    "Trajectory",
    "VoidModel",
    "VoidParameters",
    "adaptive_spectral",
    "carried_state",
    "equilibrium_vacancy_fraction",
    "etdrk2_spectral",
    "explicit_euler",
    "explicit_stability_limit",
    "flux_divergence",
    "get_integrator",
    "imex_euler",
    "initial_condition",
    "laplacian",
    "matrix_state",
    "pfhub1_initial_condition",
    "rollout",
    "semi_implicit_spectral",
    "several_voids",
    "single_void",
    "supersaturated",
    "void_disks",
]
