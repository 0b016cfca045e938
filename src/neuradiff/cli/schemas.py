"""``neuradiff schemas``: write the JSON schema of every settings file."""

from __future__ import annotations

from pathlib import Path

import typer

from neuradiff.cli._app import app, friendly_errors
from neuradiff.workflows import write_schemas


@app.command("schemas")
@friendly_errors
def schemas(
    out: Path = typer.Option(Path("docs/schemas"), "--out", help="Folder for the <name>.schema.json files."),
) -> None:
    """Write the JSON schema of each settings file (fit, evaluate, surrogate, simulate)."""
    for path in write_schemas(out):
        typer.echo(str(path))
