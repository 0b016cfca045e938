import json

import numpy as np
import pytest
from typer.testing import CliRunner

from neuradiff.cli import app

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, list(args))


def test_version_and_help():
    r = _run("--version")
    assert r.exit_code == 0 and r.output.startswith("neuradiff ")
    r = _run("--help")
    assert r.exit_code == 0 and "simulate-fields" in r.output


def test_simulate_fields_writes_fields_and_diagnostics(tmp_path):
    out = tmp_path / "run"
    r = _run("simulate-fields", "--out", str(out), "--size", "32", "--steps", "60", "--save-every", "20", "--seed", "3")
    assert r.exit_code == 0, r.output
    data = np.load(out / "fields.npz")
    assert data["eta"].shape == (4, 32, 32) and data["c_v"].dtype == np.float32
    assert list(data["step"]) == [0, 20, 40, 60]
    meta = json.loads((out / "simulation.json").read_text())
    assert meta["seed"] == 3 and meta["parameters"]["kBT"]["value"] == 5.0
    assert meta["parameters"]["D_v"]["unit"] == "dx²/time"
    lines = (out / "diagnostics.csv").read_text().splitlines()
    assert lines[0].startswith("step,time,free_energy") and len(lines) == 5
    # same seed, same run
    out2 = tmp_path / "run2"
    _run("simulate-fields", "--out", str(out2), "--size", "32", "--steps", "60", "--save-every", "20", "--seed", "3")
    assert (out / "fields.npz").read_bytes() == (out2 / "fields.npz").read_bytes()


@pytest.mark.slow
def test_stochastic_default_run_is_stable(tmp_path):
    r = _run("simulate-fields", "--out", str(tmp_path), "--size", "48", "--steps", "600", "--save-every", "300")
    assert r.exit_code == 0, r.output
    eta = np.load(tmp_path / "fields.npz")["eta"]
    assert np.isfinite(eta).all() and (eta[-1] >= 0.5).sum() < (eta[0] >= 0.5).sum()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--initial", "bogus"], "unknown initial condition"),
        (["--dt", "0"], "dt must be a positive"),
        (["--size", "4"], "size must be"),
        (["--discretisation", "upwind"], "discretisation"),
        (["--integrator", "rk4"], "integrator"),
        (["--params", "missing.json"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    out = tmp_path / "out"
    r = _run("simulate-fields", "--out", str(out), "--steps", "5", *args)
    assert r.exit_code == 2
    assert message in r.output and "Traceback" not in r.output
    assert len([ln for ln in r.output.splitlines() if ln.strip()]) == 1
    assert not out.exists() or not any(out.iterdir())


def test_negative_parameter_file(tmp_path):
    p = tmp_path / "p.json"
    p.write_text(json.dumps({"D_v": -1}))
    r = _run("simulate-fields", "--out", str(tmp_path / "o"), "--params", str(p))
    assert r.exit_code == 2 and "D_v" in r.output and "negative" in r.output
