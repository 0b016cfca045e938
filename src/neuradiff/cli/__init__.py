"""Command-line interface: a thin layer over the Python API (``neuradiff --help``)."""

from __future__ import annotations

from neuradiff.cli._app import app

# Each module registers its commands on ``app``.
from neuradiff.cli import fit as _fit  # noqa: F401,E402
from neuradiff.cli import simulate as _simulate  # noqa: F401,E402
from neuradiff.cli import simulate_fields as _simulate_fields  # noqa: F401,E402
from neuradiff.cli import measure as _measure  # noqa: F401,E402
from neuradiff.cli import evaluate as _evaluate  # noqa: F401,E402


def main() -> None:
    """Entry point of the ``neuradiff`` console script."""
    app()


__all__ = ["app", "main"]
