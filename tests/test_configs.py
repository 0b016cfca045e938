"""Settings files: pydantic validation (one line naming key, expected type and value; exit 2 from the CLI) and
the JSON schemas in docs/schemas kept up to date."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from neuradiff.cli import app
from neuradiff.core.config import settings_from
from neuradiff.core.errors import NeuradiffError
from neuradiff.evaluation.config import SuiteConfig, suite_config
from neuradiff.synth.datasets import dataset_config
from neuradiff.training import FitConfig
from neuradiff.workflows.schemas import config_schemas, schema_text

DOCS = Path(__file__).resolve().parents[1] / "docs" / "schemas"
runner = CliRunner()


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"pretrain_iters": "abc"}, ["pretrain_iters", "integer", "'abc'"]),
        ({"lr_phys": "0.1"}, ["lr_phys", "number", "'0.1'"]),
        ({"joint_iters": 2.5}, ["joint_iters", "integer", "2.5"]),
        ({"augment": "yes"}, ["augment", "boolean", "'yes'"]),
        ({"pretrain_iter": 3}, ["unknown key 'pretrain_iter'", "did you mean 'pretrain_iters'"]),
        ({"gap": 0}, ["gap", "greater than or equal to 1", "0"]),
        ({"lr_net": -1e-3}, ["lr_net", "greater than 0", "-0.001"]),
        ({"boundary": "walls"}, ["boundary", "'auto', 'periodic' or 'no-flux'", "'walls'"]),
        ({"fixed_params": {"E_i": "8"}}, ["fixed_params.E_i", "number", "'8'"]),
        ({"crop": 64, "crop_margin": 40}, ["crop_margin", "crop/4", "40"]),
        ({"learn": ["E_v", "E_x"]}, ["learn", "'E_x'"]),
    ],
)
def test_bad_fit_settings_are_one_line_naming_key_type_and_value(values, words):
    with pytest.raises(NeuradiffError) as err:
        settings_from(FitConfig, values, "fit", "fit.json")
    message = str(err.value)
    assert "\n" not in message and message.startswith("bad fit settings in fit.json: ")
    for word in words:
        assert word in message


def test_good_settings_keep_their_values():
    cfg = settings_from(FitConfig, {"joint_iters": 7, "lr_phys": 1, "fixed_params": {"E_i": 8}}, "fit")
    assert cfg.joint_iters == 7 and cfg.lr_phys == 1.0 and isinstance(cfg.lr_phys, float)
    assert cfg.fixed_params == {"E_i": 8.0}


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"frames": "many"}, ["frames", "integer", "'many'"]),
        ({"render": {"dose": "high"}}, ["render.dose", "number", "'high'"]),
        ({"simulation": {"sizee": 64}}, ["simulation.sizee", "did you mean 'size'"]),
        ({"annotations": {"fraction": 2.0}}, ["annotation fraction", "2.0"]),
        ({"nm_per_px": 0}, ["nm_per_px", "greater than 0"]),
        ({"colour": "red"}, ["unknown key 'colour'"]),
    ],
)
def test_bad_dataset_settings_name_the_nested_key(overrides, words):
    with pytest.raises(NeuradiffError) as err:
        dataset_config("single-void", overrides=overrides)
    assert "\n" not in str(err.value)
    for word in words:
        assert word in str(err.value)


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"fit": {"gap": 0}}, ["fit.gap", "greater than or equal to 1"]),
        ({"surrogate": {"iters": "x"}}, ["surrogate.iters", "integer", "'x'"]),
        ({"data": {"frames": 0}}, ["data.frames", "greater than or equal to 1"]),
        ({"workers": 0}, ["workers", "greater than or equal to 1"]),
        ({"fit_seed": 2}, ["unknown key 'fit_seed'", "did you mean 'fit_seeds'"]),
    ],
)
def test_bad_evaluation_settings_name_the_nested_key(overrides, words):
    with pytest.raises(NeuradiffError) as err:
        suite_config(overrides=overrides)
    assert "\n" not in str(err.value)
    for word in words:
        assert word in str(err.value)


def _one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("neuradiff: error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


@pytest.mark.parametrize(
    ("command", "config", "key"),
    [
        (
            ["fit", "video.tif", "--annotations", "ann.tif", "--out", "model"],
            {"pretrain_iters": "abc"},
            "pretrain_iters",
        ),
        (["fit", "video.tif", "--annotations", "ann.tif", "--out", "model"], {"lr_phys": "0.1"}, "lr_phys"),
        (["fit", "video.tif", "--annotations", "ann.tif", "--out", "model"], {"nope": 1}, "nope"),
        (["evaluate", "--out", "eval"], {"fit_seeds": -1}, "fit_seeds"),
        (["simulate", "--out", "video"], {"render": {"bit_depth": 12}}, "bit_depth"),
    ],
)
def test_cli_refuses_bad_config_in_one_line(tmp_path, monkeypatch, command, config, key):
    monkeypatch.chdir(tmp_path)
    Path("bad.json").write_text(json.dumps(config))
    result = runner.invoke(app, [*command, "--config", "bad.json"])
    line = _one_error_line(result)
    assert key in line
    assert not any(p.name in ("model", "eval", "video") for p in tmp_path.iterdir())


_FIELDS = list(FitConfig.__dataclass_fields__)
_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 400),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.text(max_size=6),
    st.lists(st.text(max_size=4), max_size=3),
    st.dictionaries(st.text(max_size=4), st.floats(-2, 10) | st.text(max_size=3), max_size=2),
)
_keys = st.sampled_from(_FIELDS) | st.text(min_size=1, max_size=12)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_keys, _values, max_size=4))
def test_fuzzed_fit_configs_are_accepted_or_refused_in_one_line(values):
    try:
        cfg = settings_from(FitConfig, values, "fit", "f.json")
    except NeuradiffError as exc:
        message = str(exc)
        assert "\n" not in message and message.startswith("bad fit settings in f.json: ")
        assert any(str(k) in message or repr(k) in message for k in values) or "NetConfig" in message
    else:
        for key, value in values.items():
            if key not in ("initial_params", "fixed_params"):
                assert getattr(cfg, key) == value


_SUITE_FIELDS = list(SuiteConfig.__dataclass_fields__)


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(_SUITE_FIELDS + ["frames", "dose"]),
        st.one_of(
            st.integers(-3, 5), st.floats(-1, 2), st.text(max_size=3), st.dictionaries(_keys, _values, max_size=2)
        ),
        max_size=3,
    )
)
def test_fuzzed_evaluation_configs_are_accepted_or_refused_in_one_line(values):
    try:
        suite_config(overrides=values)
    except NeuradiffError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("bad evaluation settings")


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(["frames", "seed", "nm_per_px", "render", "annotations", "simulation", "parameters", "x"]),
        st.one_of(
            st.integers(-3, 100),
            st.floats(-1, 2),
            st.text(max_size=3),
            st.dictionaries(st.sampled_from(["dose", "size", "fraction", "E_v", "region", "y"]), _values, max_size=2),
        ),
        max_size=3,
    )
)
def test_fuzzed_dataset_configs_are_accepted_or_refused_in_one_line(values):
    try:
        dataset_config("single-void", overrides=values)
    except NeuradiffError as exc:
        assert "\n" not in str(exc)


@pytest.mark.parametrize("name", sorted(config_schemas()))
def test_schemas_in_docs_are_up_to_date(name):
    path = DOCS / f"{name}.schema.json"
    assert path.is_file(), "run `neuradiff schemas --out docs/schemas`"
    assert path.read_text() == schema_text(config_schemas()[name]), "run `neuradiff schemas --out docs/schemas`"


def test_schema_describes_the_checks():
    fit = config_schemas()["fit"]
    assert fit["additionalProperties"] is False
    assert fit["properties"]["joint_iters"] == {
        "default": 50,
        "minimum": 0,
        "title": "Joint Iters",
        "type": "integer",
    }
    assert fit["properties"]["pretrain_iters"] == {
        "anyOf": [{"minimum": 0, "type": "integer"}, {"type": "null"}],
        "default": None,
        "title": "Pretrain Iters",
    }
    assert fit["properties"]["boundary"]["enum"] == ["auto", "periodic", "no-flux"]
    assert "parameters" in config_schemas()["simulate"]["properties"]
