"""``neuradiff evaluate``: the quick suite end to end, the worker pool, bad input."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from neuradiff.cli import app
from neuradiff.evaluation.config import suite_config
from neuradiff.evaluation.jobs import JobRunner
from neuradiff.synth.datasets import dataset_config

runner = CliRunner()
ALL_METHODS = {
    "NeuraDiff",
    "supervised UNet",
    "autoregressive UNet surrogate",
    "differentiable physics, no net",
    "physics-informed residual fit",
}


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluate") / "report"
    result = runner.invoke(app, ["evaluate", "--suite", "paper", "--quick", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_quick_suite_writes_every_table_with_every_method(quick_report):
    out = quick_report
    for name in (
        "report.html",
        "results.json",
        "figures/fig4_frames.png",
        "figures/fig4_curves.png",
        "figures/fig6_frames.png",
        "figures/fig6_curves.png",
        "figures/parameters.png",
        "data/single-void/video.tif",
        "data/multi-void/truth.npz",
    ):
        assert (out / name).is_file(), name
    tracking = {r["method"] for r in _rows(out / "tables/table1_tracking.csv")}
    assert {"NeuraDiff", "supervised UNet"} <= tracking
    forecast = {r["method"] for r in _rows(out / "tables/fig4_forecast.csv")}
    transfer = {r["method"] for r in _rows(out / "tables/fig6_forecast.csv")}
    assert ALL_METHODS - {"supervised UNet"} <= forecast and ALL_METHODS - {"supervised UNet"} <= transfer
    assert "autoregressive UNet surrogate, seed 1" in forecast and "autoregressive UNet surrogate, seed 1" in transfer
    for row in _rows(out / "tables/table1_tracking.csv"):
        assert 0 <= float(row["void IoU"]) <= 1 and 0 <= float(row["pixel accuracy (%)"]) <= 100
    params = _rows(out / "tables/parameters.csv")
    assert {r["parameter"] for r in params} == {
        "E_v",
        "E_i",
        "kBT",
        "kappa_v",
        "kappa_i",
        "kappa_eta",
        "D_v",
        "D_i",
        "L",
    }
    assert all(
        r["verdict"] in ("pinned down", "jointly constrained", "weakly constrained", "not constrained") for r in params
    )
    results = json.loads((out / "results.json").read_text())
    assert len(results["scores"]["parameters"]["neuradiff_seeds"]) == 2
    curves = _rows(out / "tables/fig4_curves.csv")
    assert len(curves) == 12 and float(curves[0]["truth_area_nm2"]) > 0
    for block in (results["scores"]["forecast"], results["scores"]["transfer"]["forecast"]):
        # forecasts are moved with the drift estimated from the video; the known drift is only a reference
        assert block["drift"]["source"].startswith("estimated") and block["drift"]["rms_error_px"] < 0.5
        for scores in block["methods"].values():
            assert 0 <= scores["against_recognition"]["last_frame_iou"] <= 1
            assert 0 <= scores["last_frame_iou_truth_drift"] <= 1


@pytest.mark.slow  # it shares the quick suite run of the tests above (about 30 s)
def test_report_is_self_contained(quick_report):
    html = (quick_report / "report.html").read_text()
    for method in ALL_METHODS:
        assert method in html
    sources = re.findall(r"""(?:src|href)\s*=\s*['"]([^'"]+)""", html)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<table>" in html and "identif" in html.lower()


@pytest.mark.slow
def test_resume_reuses_the_saved_jobs_and_gives_the_same_tables(quick_report, tmp_path):
    import shutil

    out = tmp_path / "again"
    shutil.copytree(quick_report / "checkpoints", out / "checkpoints")
    result = runner.invoke(app, ["evaluate", "--quick", "--resume", "--out", str(out)])
    assert result.exit_code == 0, result.output
    timing = _rows(out / "tables/timing.csv")
    reused = {r["stage"] for r in timing if r["from checkpoint"] == "yes"}
    assert {"NeuraDiff (seed 0)", "supervised UNet", "autoregressive UNet surrogate (seed 1)"} <= reused
    for name in ("table1_tracking", "fig4_forecast", "fig6_forecast", "parameters"):
        assert (out / f"tables/{name}.csv").read_text() == (quick_report / f"tables/{name}.csv").read_text(), name


@pytest.mark.slow
def test_worker_pool_gives_the_in_process_result():
    cfg = dataset_config("single-void", overrides={"simulation": {"size": 24}, "frames": 3, "steps_per_frame": 5})
    seen = []
    with JobRunner(2, 1, lambda *msg: seen.append(msg)) as pool:
        pool.submit("a", "dataset", cfg)
        key, res = pool.next()
        assert pool.next() is None
    with JobRunner(1, 1) as local:
        local.submit("a", "dataset", cfg)
        _, ref = local.next()
    assert key == "a" and ("a", 1, 1) in seen
    np.testing.assert_array_equal(res.dataset.video, ref.dataset.video)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--suite", "nope"], "unknown suite"),
        (["--workers", "0"], "workers"),
        (["--config", "{cfg}"], "bad evaluation settings"),
        (["--config", "missing.json"], "missing.json"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"no_such_setting": 1}))
    args = [a.replace("{cfg}", str(cfg)) for a in args]
    out = tmp_path / "out"
    result = runner.invoke(app, ["evaluate", "--quick", "--out", str(out), *args])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0]
    assert not out.exists() or not any(out.iterdir())


def test_quick_config_is_small():
    cfg = suite_config(quick=True)
    assert cfg.workers == 1 and cfg.fit_config().pretrain_iters <= 50


def test_config_sections_update_the_preset_key_by_key(tmp_path):
    path = tmp_path / "suite.json"
    path.write_text(json.dumps({"evaluate": {"fit_seeds": 4, "fit": {"joint_iters": 6}}}))
    cfg = suite_config(quick=True, path=path, overrides={"data": {"frames": 14}})
    quick = suite_config(quick=True)
    assert cfg.fit_seeds == 4 and cfg.fit_config().joint_iters == 6
    assert cfg.fit_config().pretrain_iters == quick.fit_config().pretrain_iters  # kept from the preset
    assert cfg.data["frames"] == 14 and cfg.data["simulation"] == quick.data["simulation"]


def test_a_suite_can_train_on_a_multi_void_video(tmp_path):
    path = tmp_path / "suite.json"
    path.write_text(json.dumps({"train_scenario": "multi-void"}))
    cfg = suite_config(quick=True, path=path, overrides={"data": {"simulation": {"size": 48, "n_voids": 3}}})
    cfg.validate()
    assert cfg.train_scenario == "multi-void" and suite_config(quick=True).train_scenario == "single-void"


def test_an_unknown_training_scenario_is_one_line_and_exit_2(tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"train_scenario": "nucleation"}))
    out = tmp_path / "out"
    result = runner.invoke(app, ["evaluate", "--quick", "--out", str(out), "--config", str(cfg)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "train_scenario" in lines[0]
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.slow
def test_quick_suite_trained_on_a_multi_void_video_transfers_to_another(tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"train_scenario": "multi-void", "data": {"simulation": {"size": 48, "n_voids": 3}}}))
    out = tmp_path / "report"
    result = runner.invoke(app, ["evaluate", "--quick", "--config", str(cfg), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "data/multi-void/video.tif").is_file() and (out / "data/multi-void-transfer/truth.npz").is_file()
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["train_scenario"] == "multi-void"
    transfer = {r["method"] for r in _rows(out / "tables/fig6_forecast.csv")}
    assert "NeuraDiff" in {m.split(",")[0] for m in transfer}
    assert "multi-void training video" in (out / "report.html").read_text()
