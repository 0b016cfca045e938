"""Plumbing every room uses: errors, annotation labels, validators, atomic files and config files.

Nothing here knows about physics, nets or methods; every other room may import from here.
"""

from neuradiff.core.errors import NeuradiffError, SimulationError
from neuradiff.core.labels import SOLID, UNKNOWN, VOID, Label, known, overlay_annotation

__all__ = ["SOLID", "UNKNOWN", "VOID", "Label", "NeuradiffError", "SimulationError", "known", "overlay_annotation"]
