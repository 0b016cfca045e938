"""Command-line interface: a thin layer over :mod:`neuradiff.workflows` (``neuradiff --help``).

Each command parses its arguments, shows progress and makes one library call.
"""

from __future__ import annotations

from neuradiff.cli import batch, evaluate, fit, measure, schemas, simulate  # noqa: F401 - each module registers its commands
from neuradiff.cli._app import app


def main() -> None:
    """Entry point of the ``neuradiff`` console script."""
    app()


__all__ = ["app", "main"]
