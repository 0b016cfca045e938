"""Errors that neuradiff raises for bad input; the CLI turns them into one line and exit code 2."""

from __future__ import annotations


class NeuradiffError(ValueError):
    """Bad input or an unusable state: the message says what and where, in one line."""


class SimulationError(NeuradiffError, FloatingPointError):
    """A simulation produced NaN/Inf or could not be continued."""
