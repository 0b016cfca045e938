"""``neuradiff schemas``: the JSON schema of every settings file, written into the documentation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from neuradiff.core.config import settings_schema
from neuradiff.core.files import prepare_output_dir, write_text
from neuradiff.evaluation.config import SuiteConfig
from neuradiff.methods.surrogate import SurrogateConfig
from neuradiff.synth.datasets import dataset_schema
from neuradiff.training import FitConfig


def config_schemas() -> dict[str, dict[str, Any]]:
    """The JSON schema of each settings file, by name: ``fit`` (``neuradiff fit --config``), ``evaluate``
    (``neuradiff evaluate --config``), ``surrogate`` (the ``surrogate`` table of an evaluation file) and
    ``simulate`` (``neuradiff simulate --config``).

    Examples
    --------
    >>> schemas = config_schemas()
    >>> sorted(schemas), schemas["fit"]["properties"]["gap"]["minimum"]
    (['evaluate', 'fit', 'simulate', 'surrogate'], 1)
    """
    return {
        "fit": settings_schema(
            FitConfig,
            "neuradiff fit --config",
            "Settings of a fit (the whole file or its fit table); every key is optional.",
        ),
        "evaluate": settings_schema(
            SuiteConfig,
            "neuradiff evaluate --config",
            "Settings of an evaluation suite (the whole file or its evaluate table); fit, surrogate, data and "
            "transfer_data are tables as in fit.schema.json, surrogate.schema.json and simulate.schema.json.",
        ),
        "surrogate": settings_schema(
            SurrogateConfig, "surrogate settings", "The surrogate table of a neuradiff evaluate --config file."
        ),
        "simulate": dataset_schema(),
    }


def schema_text(schema: dict[str, Any]) -> str:
    """The schema as written to disk (sorted keys, two-space indent, final newline)."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_schemas(out: str | Path) -> list[Path]:
    """Write ``<name>.schema.json`` for every settings file into ``out``; return the paths written."""
    folder = prepare_output_dir(out)
    written = []
    for name, schema in config_schemas().items():
        path = folder / f"{name}.schema.json"
        write_text(path, schema_text(schema))
        written.append(path)
    return written
