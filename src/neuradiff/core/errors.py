"""Errors that neuradiff raises for bad input; the CLI turns them into one line and exit code 2."""

from __future__ import annotations


class NeuradiffError(ValueError):
    """Bad input or an unusable state: the message says what and where, in one line."""


class SimulationError(NeuradiffError, FloatingPointError):
    """A simulation produced NaN/Inf or could not be continued."""


class StiffnessError(SimulationError):
    """A step would need more explicit sub-steps than allowed: the state and the parameters make the equations too
    stiff (training skips such an iteration, see :class:`~neuradiff.training.TrainingLoop`)."""
