"""End-to-end checks of the joint training, tracking and forecasting on tiny synthetic videos."""

import json

import numpy as np
import pytest
import tifffile
import torch
from typer.testing import CliRunner

from neuradiff.cli import app
from neuradiff.core.errors import NeuradiffError, SimulationError
from neuradiff.io.video import read_video
from neuradiff.methods import fitted_masks, load_model
from neuradiff.methods.neuradiff import NeuraDiffObjective, fit_neuradiff
from neuradiff.nets.contrast import FITTED_MAX_CONTRAST
from neuradiff.synth.datasets import dataset_config, make_dataset, write_dataset
from neuradiff.training import FitConfig, TrainingData, TrainingLoop

runner = CliRunner()
TINY_FIT = {
    "pretrain_iters": 6,
    "joint_iters": 4,
    "eval_every": 2,
    "checkpoint_every": 2,
    "batch": 2,
    "gap": 2,
    "dt": 0.2,
    "net": {"width": 4, "depth": 2},
}


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    cfg = dataset_config(
        "single-void",
        overrides={"frames": 10, "steps_per_frame": 10, "simulation": {"size": 32}, "annotations": {"fraction": 0.3}},
    )
    write_dataset(make_dataset(cfg), folder)
    return folder


def _fit_config(tmp_path, **extra):
    path = tmp_path / "fit.json"
    path.write_text(json.dumps({**TINY_FIT, **extra}))
    return path


def _fit_cli(dataset, out, config, *extra):
    """``neuradiff fit`` of a dataset folder's video and annotations into ``out`` with the settings file ``config``."""
    args = ["fit", str(dataset / "video.tif"), "--annotations", str(dataset / "annotations.tif")]
    return runner.invoke(app, [*args, "--out", str(out), "--config", str(config), *extra])


def _data(folder):
    video = tifffile.imread(folder / "video.tif").astype(np.float32)
    return TrainingData(video, tifffile.imread(folder / "annotations.tif"), 1.0, 1.0, 0.2)


@pytest.mark.slow
def test_fit_writes_every_output_and_metrics(tiny_dataset, tmp_path):
    out = tmp_path / "model"
    r = _fit_cli(tiny_dataset, out, _fit_config(tmp_path), "--truth", str(tiny_dataset))
    assert r.exit_code == 0, r.output
    for name in ("model.pt", "model.json", "params.json", "history.csv", "config.json", "metrics.json"):
        assert (out / name).is_file(), name
    params = json.loads((out / "params.json").read_text())
    assert params["L"]["learned"] and params["L"]["initial"] == 2.0 and params["L"]["unit"]
    assert not params["R_bulk"]["learned"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["held_out_tracking"]["pixel_accuracy"] <= 1
    assert set(metrics["parameters"]) == set(json.loads((out / "model.json").read_text())["learned"])
    fc = metrics["forecast"]
    assert fc["drift_corrected"] and len(fc["area_forecast_px"]) == len(fc["area_truth_px"]) == 10
    assert 0 <= fc["last_frame_iou"] <= 1 and 0 <= fc["last_frame_iou_without_drift"] <= 1
    assert metrics["forecast_initial_guess"]["max_relative_area_error"] >= 0
    history = (out / "history.csv").read_text().splitlines()
    assert len(history) == 1 + 6 + 4 and "loss_sim_rec" in history[0]
    meta = json.loads((out / "model.json").read_text())
    assert meta["video"]["nm_per_px"] == pytest.approx(1.0) and meta["physics"]["sim_time_per_frame"] > 0
    # what the video determines: printed, in params.json, per parameter, and scored against the truth
    ident = params["identifiability"]
    assert "What this video determines:" in r.output and ident["statement"] in r.output.replace("\n", " ")
    assert set(ident["status"]) == set(meta["learned"])
    assert all(params[n]["identifiability"] == ident["status"][n] for n in meta["learned"])
    assert "refinement" in meta and meta["refinement"]["rss_px2"][-1] <= meta["refinement"]["rss_px2"][0]
    assert len(metrics["identifiable_combinations"]) == len(ident["determined"])
    # how many annotated voids the net reproduces: in model.json and printed
    seen = meta["annotated_voids"]
    assert seen["annotated"] >= 1 and 0 <= seen["found"] <= seen["annotated"]
    assert 0 <= seen["clear_found"] <= seen["clear"] <= seen["annotated"] and seen["clear_found"] <= seen["found"]
    assert f"reproduces {seen['found']} of the {seen['annotated']} annotated voids" in r.output
    if ident["posterior"] is not None:
        assert 0 <= metrics["forecast_band"]["fraction_of_frames_in_band"] <= 1

    # track and forecast on the saved model
    tr = runner.invoke(
        app, ["track", str(tiny_dataset / "video.tif"), "--model", str(out), "--out", str(tmp_path / "track")]
    )
    assert tr.exit_code == 0, tr.output
    eta = tifffile.imread(tmp_path / "track" / "eta.tif")
    masks = tifffile.imread(tmp_path / "track" / "masks.tif")
    assert eta.shape == (10, 32, 32) and eta.dtype == np.float32
    # eta ≥ 0.5 without the regions fainter than the annotated voids
    assert np.array_equal(masks, fitted_masks(load_model(out), eta, tifffile.imread(tiny_dataset / "video.tif")))
    fc = runner.invoke(
        app,
        [
            "forecast",
            "--model",
            str(out),
            "--video",
            str(tiny_dataset / "video.tif"),
            "--frame",
            "2",
            "--steps",
            "3",
            "--out",
            str(tmp_path / "fc"),
        ],
    )
    assert fc.exit_code == 0, fc.output
    z = np.load(tmp_path / "fc" / "forecast.npz")
    assert z["eta"].shape == (4, 32, 32) and list(z["frame"]) == [2, 3, 4, 5]
    assert tifffile.imread(tmp_path / "fc" / "forecast.tif").shape == (4, 32, 32)
    band = (tmp_path / "fc" / "forecast_band.csv").read_text().splitlines()
    assert band[0] == "frame,time_s,area_nm2,area_lo_nm2,area_hi_nm2,radius_nm,radius_lo_nm,radius_hi_nm"
    rows = np.array([[float(v) for v in line.split(",")] for line in band[1:]])
    assert rows.shape == (4, 8) and (rows[:, 3] <= rows[:, 2]).all() and (rows[:, 2] <= rows[:, 4]).all()
    assert (tmp_path / "fc" / "forecast_band.png").stat().st_size > 1000
    # The command hands the band its forecast's start state; computed afresh, the band is the same (CSV digits).
    video = read_video(tiny_dataset / "video.tif")
    ref = load_model(out).forecast_band(video.frames, 2, 3, nm_per_px=video.calibration.nm_per_px)
    assert np.allclose(rows[:, 2:5], np.stack([ref.area, ref.area_lo, ref.area_hi], axis=1), rtol=1e-5)
    bad = runner.invoke(
        app,
        [
            "forecast",
            "--model",
            str(out),
            "--video",
            str(tiny_dataset / "video.tif"),
            "--frame",
            "10",
            "--steps",
            "3",
            "--out",
            str(tmp_path / "fc2"),
        ],
    )
    assert bad.exit_code == 2 and "out of range" in bad.output


@pytest.mark.slow
def test_resume_reaches_the_uninterrupted_result(tiny_dataset, tmp_path):
    data = _data(tiny_dataset)
    cfg = FitConfig(**TINY_FIT)
    full = fit_neuradiff(data, cfg, checkpoint_path=tmp_path / "a.pt")

    class Interrupted(Exception):
        pass

    def stop_after(phase, it, total, row):
        if phase == "joint" and it == 3:
            raise Interrupted

    with pytest.raises(Interrupted):
        fit_neuradiff(data, cfg, checkpoint_path=tmp_path / "b.pt", progress=stop_after)
    resumed = fit_neuradiff(data, cfg, checkpoint_path=tmp_path / "b.pt", resume=True)
    for k, v in full.model.net.state_dict().items():
        assert torch.equal(v, resumed.model.net.state_dict()[k]), k
    assert full.model.params.as_floats() == resumed.model.params.as_floats()
    assert full.kept["val_loss"] == resumed.kept["val_loss"]


@pytest.mark.slow
def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(tiny_dataset, tmp_path):
    class Poisoned(NeuraDiffObjective):
        def joint_loss(self, it):
            terms = super().joint_loss(it)
            return {**terms, "loss": terms["loss"] * float("nan")} if it == 2 else terms

    ckpt = tmp_path / "c.pt"
    cfg = FitConfig(**TINY_FIT)
    loop = TrainingLoop(
        Poisoned(_data(tiny_dataset), cfg),
        settings=cfg.to_dict(),
        checkpoint_path=ckpt,
        checkpoint_every=cfg.checkpoint_every,
    )
    with pytest.raises(SimulationError, match=r"iteration 2.*last good checkpoint"):
        loop.run()
    blob = torch.load(ckpt, weights_only=True)
    assert blob["phase"] == "joint" and blob["iteration"] == 2
    assert all(bool(torch.isfinite(v).all()) for v in blob["modules"]["net"].values())


@pytest.mark.slow
def test_an_iteration_too_stiff_to_simulate_is_skipped_then_the_run_stops(tiny_dataset, tmp_path):
    # A joint batch whose rollout needs more explicit sub-steps than allowed (the net's latent fields and the
    # learned parameters can make one) is skipped without an optimiser step and recorded; a run that skips more
    # than a quarter of a phase stops with one clear line and its last good checkpoint.
    from neuradiff.core.errors import StiffnessError

    class Stiff(NeuraDiffObjective):
        at: tuple[int, ...] = ()

        def joint_loss(self, it, processes=None):
            if it in self.at:
                raise StiffnessError("time step dt=0.3 would need 1400 explicit sub-steps")
            return super().joint_loss(it, processes)

    cfg = FitConfig(**{**TINY_FIT, "joint_iters": 8})
    objective = Stiff(_data(tiny_dataset), cfg)
    objective.at = (3, 5)
    params = []
    loop = TrainingLoop(objective, settings=cfg.to_dict())
    loop.progress = lambda phase, done, total, row: params.append(float(objective.params().L.detach()))
    with pytest.warns(RuntimeWarning, match="joint iteration 4 skipped: time step"):
        state = loop.run()
    joint = [row for row in state.history if row["phase"] == "joint"]
    assert [row.get("skipped", 0) for row in joint] == [0, 0, 0, 1, 0, 1, 0, 0]
    assert all("loss_loss" not in row for row in joint if row.get("skipped"))
    pre = cfg.pretrain_iters
    assert params[pre + 3] == params[pre + 2] and params[pre + 5] == params[pre + 4]  # no step when skipped
    assert params[pre + 4] != params[pre + 3]

    ckpt = tmp_path / "c.pt"
    objective = Stiff(_data(tiny_dataset), cfg)
    objective.at = (1, 2, 4)
    loop = TrainingLoop(objective, settings=cfg.to_dict(), checkpoint_path=ckpt, checkpoint_every=2)
    with pytest.warns(RuntimeWarning), pytest.raises(SimulationError, match=r"3 of 8 joint.*too stiff.*checkpoint"):
        loop.run()
    assert torch.load(ckpt, weights_only=True)["iteration"] == 4


@pytest.mark.parametrize("frames, expected", [(1, 150), (2, 300), (3, 450), (5, 450)])
def test_default_pretraining_grows_with_the_annotated_frames(tiny_dataset, frames, expected):
    data = _data(tiny_dataset)
    first = int(data.annotated_frames()[0])
    ann = np.full_like(data.annotations, 255)
    ann[np.linspace(0, len(ann) - 1, frames).astype(int)] = data.annotations[first]
    data = TrainingData(data.frames, ann, None, None, 0.2)
    settings = {k: v for k, v in TINY_FIT.items() if k not in ("pretrain_iters", "net")}  # from the generalist
    objective = NeuraDiffObjective(data, FitConfig(**settings))
    assert FitConfig(**settings).pretrain_iters is None
    assert objective.config.pretrain_iters == expected
    assert [p.iterations for p in objective.phases()] == [expected, TINY_FIT["joint_iters"]]
    assert FitConfig(**settings).for_annotated_frames(frames).pretrain_iters == expected
    scratch = NeuraDiffObjective(data, FitConfig(**settings, init="scratch", net=TINY_FIT["net"]))
    assert scratch.config.pretrain_iters == 150  # from random weights: as many whatever the frames
    assert NeuraDiffObjective(data, FitConfig(**TINY_FIT)).config.pretrain_iters == 6  # a number given is kept


@pytest.mark.slow
def test_gradients_reach_every_learned_parameter_through_the_rollout(tiny_dataset):
    objective = NeuraDiffObjective(_data(tiny_dataset), FitConfig(**TINY_FIT))
    end = int(objective.rec.train_frames[-1])  # a pair ending on a training annotation
    terms = objective.pair_loss(objective.params(), torch.tensor([end - 2, 0]))
    terms["loss"].backward()
    for name, raw in objective.params.raw.items():
        assert raw.grad is not None and float(raw.grad.abs()) > 0, name
    assert float(terms["sim"].detach()) > 0


@pytest.mark.slow
def test_physics_fitted_to_annotations_only_when_asked(tiny_dataset):
    objective = NeuraDiffObjective(_data(tiny_dataset), FitConfig(**TINY_FIT, physics_loss="sim"))
    end = int(objective.rec.train_frames[-1])
    starts = torch.tensor([end - 2, 0])

    def terms():
        return objective.pair_loss(objective.params(), starts)

    phys = list(objective.params.parameters())
    expected_phys = torch.autograd.grad(terms()["sim"], phys)
    expected_net = torch.autograd.grad(terms()["loss"], list(objective.net.parameters()))
    opt_net = torch.optim.SGD(objective.net.parameters(), lr=0.0)
    opt_phys = torch.optim.SGD(phys, lr=0.0)
    loop = TrainingLoop(objective, settings={})
    loop._step("joint", 0, terms(), [opt_net, opt_phys])
    for p, g in zip(phys, expected_phys):
        assert torch.allclose(p.grad, g, rtol=1e-5, atol=1e-12)
    for p, g in zip(objective.net.parameters(), expected_net):
        assert torch.allclose(p.grad, g, rtol=1e-5, atol=1e-9)
    total = torch.autograd.grad(terms()["loss"], phys)
    assert any(not torch.allclose(a, b) for a, b in zip(total, expected_phys))  # the option changes something


def test_bad_inputs_are_one_clear_line(tiny_dataset, tmp_path):
    video = tifffile.imread(tiny_dataset / "video.tif")
    ann = tifffile.imread(tiny_dataset / "annotations.tif")
    cases = {
        "short.tif": ann[:5],
        "values.tif": np.where(ann == 1, 7, ann).astype(np.uint8),
        "unknown.tif": np.full_like(ann, 255),
        "size.tif": ann[:, :16, :16],
    }
    messages = {"short.tif": "", "values.tif": "values", "unknown.tif": "all unknown", "size.tif": ""}
    for name, arr in cases.items():
        tifffile.imwrite(tmp_path / name, arr)
        r = runner.invoke(
            app,
            [
                "fit",
                str(tiny_dataset / "video.tif"),
                "--annotations",
                str(tmp_path / name),
                "--out",
                str(tmp_path / ("o_" + name)),
                "--config",
                str(_fit_config(tmp_path)),
            ],
        )
        assert r.exit_code == 2, (name, r.output)
        assert messages[name] in r.output and "Traceback" not in r.output
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.json").write_text(json.dumps({"format": "neuradiff-model", "format_version": 99}))
    r = runner.invoke(
        app, ["track", str(tiny_dataset / "video.tif"), "--model", str(tmp_path / "m"), "--out", str(tmp_path / "t")]
    )
    assert r.exit_code == 2 and "version" in r.output
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    r = runner.invoke(
        app,
        [
            "fit",
            str(tiny_dataset / "video.tif"),
            "--annotations",
            str(tiny_dataset / "annotations.tif"),
            "--out",
            str(tmp_path / "ck"),
            "--config",
            str(_fit_config(tmp_path)),
            "--resume",
        ],
    )
    assert r.exit_code == 2 and "corrupt" in r.output
    assert video.shape[0] == 10


@pytest.mark.parametrize("side, config, stride", [(64, {}, 1), (256, {}, 2), (256, {"stride": 1}, 1)])
def test_large_frames_get_the_stride_2_net_unless_the_config_says(side, config, stride):
    frames = np.random.default_rng(0).normal(100, 10, (8, side, side)).astype(np.float32)
    ann = np.full(frames.shape, 255, np.uint8)
    ann[::3, :4] = 0
    objective = NeuraDiffObjective(
        TrainingData(frames, ann, 1.0, 1.0, 1.0), FitConfig(net={"width": 4, "depth": 1, **config})
    )
    assert objective.net.config.stride == stride


def test_a_fits_net_keeps_c_v_at_or_above_the_models_log_floor(tiny_dataset):
    # The net's c_v starts the joint phase's rollouts. Below the model's log floor the free energy is a quadratic
    # continuation, and a pixel the net emptied of vacancies beside a void (c_v 1.5) made the first joint
    # iteration of a few-shot fit need 1400 explicit sub-steps: the fit stopped as "too stiff".
    from neuradiff.physics.integrators import explicit_stability_limit
    from neuradiff.training.recognition import RecognitionTraining

    data = _data(tiny_dataset)
    sim = FitConfig().simulator(1.0)
    floor = sim.model.log_floor
    for init, net in (("generalist", {}), ("scratch", {"width": 4, "depth": 1})):
        start = RecognitionTraining(data, FitConfig(**{**TINY_FIT, "net": net, "init": init})).new_net()
        assert start.config.c_v_range[0] == floor
        with torch.no_grad():
            c_v = start.fields(torch.full((1, 3, 4, 4), -60.0))[:, 0]
        assert float(c_v.min()) >= floor * (1 - 1e-6)
    own = FitConfig(**{**TINY_FIT, "net": {"width": 4, "depth": 1, "c_v_range": [0.0, 1.2]}, "init": "scratch"})
    assert RecognitionTraining(data, own).new_net().config.c_v_range == (0.0, 1.2)

    def limit(lowest: float) -> float:
        state = torch.stack((torch.full((8, 8), 0.122), torch.full((8, 8), 6.9e-4), torch.zeros(8, 8)))[None]
        state[0, 0, 4, 4], state[0, 2, 4, 4] = 1.5, 0.2  # the net's highest c_v, at a void's edge
        state[0, 0, 4, 5] = lowest
        return explicit_stability_limit(sim.model, state.double(), FitConfig().initial_parameters(), 1.0)

    # at the floor the emptied pixel adds no stiffness of its own; at 0 it cut the stable step fifteenfold
    assert limit(floor) == limit(0.122) > 10 * limit(0.0)


@pytest.mark.slow
def test_a_fit_can_start_from_the_generalist(tiny_dataset, tmp_path):
    # The generalist's net, its batch norms folded: before any training it recognises as the generalist does, each
    # frame mapped by its own grey levels (levels "per-frame", the default) or all by the video's ("recording");
    # the fit trains it, saves it and reads it back.
    from neuradiff.nets.generalist import load_generalist, percentile_normalisation, trainable_net
    from neuradiff.nets.levels import normalise_frame
    from neuradiff.training.recognition import RecognitionTraining

    data = _data(tiny_dataset)
    gen = load_generalist()
    frame = data.frames[0]
    for levels in ("per-frame", "recording"):
        cfg = FitConfig(**{**TINY_FIT, "net": {}, "init": "generalist", "joint_iters": 0, "levels": levels})
        start = RecognitionTraining(data, cfg).new_net().eval()
        assert start.config.norm == "none" and start.config.embedding == "none"
        assert start.config.level == (levels == "per-frame")
        mean, std = percentile_normalisation(data.frames)
        x = normalise_frame(frame) if levels == "per-frame" else (frame - mean) / std
        with torch.no_grad():
            ours = torch.sigmoid(start.eta_logits(torch.from_numpy(start.prepare(frame[None])), torch.zeros(1)))
            theirs = torch.sigmoid(gen.net.eval().eta_logits(torch.from_numpy(x)[None], torch.zeros(1)))
        assert np.abs(ours[0].numpy() - theirs[0].numpy()).max() < 1e-4
    assert trainable_net(gen, input_mean=0.0, input_std=1.0).config.stride == gen.net.config.stride

    out = tmp_path / "model"
    r = _fit_cli(tiny_dataset, out, _fit_config(tmp_path, net={}, init="generalist", joint_iters=2))
    assert r.exit_code == 0, r.output
    info = json.loads((out / "model.json").read_text())
    assert info["net"]["norm"] == "none" and info["net"]["level"] is True
    assert f"less than t = {info['min_contrast']:.1f}" in r.output
    assert 0 < info["min_contrast"] <= FITTED_MAX_CONTRAST  # from the annotated voids
    # Forecasts and the calibration start from the matrix values around the recognised voids.
    assert info["start_fields"] == "matrix" and info["start_matrix"] == {"c_v": 0.122, "c_i": 6.9e-4}
    assert info["start_frame"] == 0  # the first annotated frame: where the calibration starts
    r = runner.invoke(
        app, ["track", str(tiny_dataset / "video.tif"), "--model", str(out), "--out", str(tmp_path / "t")]
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        app,
        ["track", str(tiny_dataset / "video.tif"), "--model", str(out), "--out", str(tmp_path / "t0")]
        + ["--min-contrast", "0", "--no-measure"],
    )
    assert r.exit_code == 0, r.output
    eta, masks = tifffile.imread(tmp_path / "t0" / "eta.tif"), tifffile.imread(tmp_path / "t0" / "masks.tif")
    np.testing.assert_array_equal(masks, (eta >= 0.5).astype(np.uint8))  # 0: every region the net finds
    used = [json.loads((tmp_path / t / "provenance.json").read_text())["model"]["min_contrast"] for t in ("t", "t0")]
    assert used == [info["min_contrast"], 0.0]

    # Per-frame levels: a frame made 15 % brighter with an offset is recognised as before, in tracking and as
    # the start of a forecast.
    fitted = load_model(out)
    frames = data.frames[:3].astype(np.float64)
    brighter = frames * 1.15 + 20.0
    np.testing.assert_allclose(fitted.recognise(brighter), fitted.recognise(frames), atol=1e-5)
    np.testing.assert_allclose(
        fitted.start_state(brighter, 1).numpy(), fitted.start_state(frames, 1).numpy(), atol=1e-5
    )


def test_levels_belong_to_the_fit_not_the_net_settings():
    with pytest.raises(ValueError, match="levels"):
        FitConfig(**{**TINY_FIT, "net": {"width": 4, "level": True}}).validate()
    with pytest.raises(ValueError, match="levels"):
        FitConfig(levels="per-pixel")  # type: ignore[arg-type]


def test_per_frame_levels_refuse_a_blank_frame_naming_it():
    frames = np.random.default_rng(0).normal(100, 10, (4, 16, 16)).astype(np.float32)
    frames[2] = 7.0
    ann = np.full(frames.shape, 255, np.uint8)
    ann[0] = 0
    with pytest.raises(NeuradiffError, match="frame 2 holds a single grey level"):
        NeuraDiffObjective(TrainingData(frames, ann, 1.0, 1.0, 1.0), FitConfig(**TINY_FIT))
    objective = NeuraDiffObjective(TrainingData(frames, ann, 1.0, 1.0, 1.0), FitConfig(**TINY_FIT, levels="recording"))
    assert not objective.net.config.level


def test_a_generalist_start_refuses_net_settings():
    with pytest.raises(ValueError, match="generalist"):
        FitConfig(**{**TINY_FIT, "init": "generalist"}).validate()


def test_fits_start_from_the_generalist_unless_a_net_is_given():
    assert FitConfig().starts_from_generalist()
    assert not FitConfig(net={"width": 4}).starts_from_generalist()
    assert not FitConfig(init="scratch").starts_from_generalist()
    assert FitConfig(init="generalist").starts_from_generalist()


def test_the_annotated_voids_a_net_reproduces_are_counted_one_to_one_within_the_known_pixels(monkeypatch):
    from neuradiff.methods import NeuraDiffModel
    from neuradiff.nets import NetConfig, RecognitionNet
    from neuradiff.physics import Simulator, VoidParameters
    from neuradiff.workflows.fit import annotated_voids_found

    model = NeuraDiffModel(RecognitionNet(NetConfig(width=4, depth=1)), VoidParameters(), Simulator())
    ann = np.full((3, 32, 32), 255, np.uint8)
    ann[0] = 0
    ann[0, 2:8, 2:8] = ann[0, 20:26, 20:26] = 1  # two voids on frame 0
    ann[2, :16] = 0
    ann[2, 4:10, 4:10] = 1  # one on the annotated top half of frame 2
    eta = np.zeros((3, 32, 32), np.float32)
    eta[0, 2:8, 2:8] = 1.0  # the first void found ...
    eta[0, 20:22, 20:22] = 1.0  # ... the second only in part (IoU 4/36)
    eta[2, 4:10, 4:10] = eta[2, 20:30, 20:30] = 1.0  # found, and a region in the unknown half: not counted
    monkeypatch.setattr(model, "recognise", lambda frames, first_index, eta_only: eta[first_index : first_index + 1])
    frames = np.random.default_rng(0).normal(0.0, 1.0, (3, 32, 32))
    frames[0, 2:8, 2:8] += 10.0  # the found void on frame 0 and the one on frame 2 stand out of the noise;
    frames[2, 4:10, 4:10] += 10.0  # the second void of frame 0 is as faint as the noise
    seen = annotated_voids_found(model, frames, ann)
    assert seen == {"found": 2, "annotated": 3, "clear_found": 2, "clear": 2}
    frames[0, 20:26, 20:26] += 10.0  # now it stands out too, and is the one missed
    assert annotated_voids_found(model, frames, ann) == {"found": 2, "annotated": 3, "clear_found": 2, "clear": 3}


def test_fit_says_its_masks_threshold_and_the_annotated_voids_too_faint_to_set_it(capsys):
    from types import SimpleNamespace

    from neuradiff.cli.fit import print_threshold

    def said(threshold, **seen):
        print_threshold(SimpleNamespace(info={"min_contrast": threshold, "annotated_voids": seen}))
        return capsys.readouterr().out

    out = said(2.04, found=32, annotated=63, clear_found=11, clear=17)
    assert "less than t = 2.0" in out and "46 of the 63 annotated voids stand out less than t = 3" in out
    out = said(3.5, found=10, annotated=10, clear_found=10, clear=10)  # every annotated void stands out
    assert "less than t = 3.5" in out and "did not set it" not in out
    out = said(0.2, found=4, annotated=4, clear_found=0, clear=0)  # none stands out: the faintest set it
    assert "less than t = 0.2" in out and "did not set it" not in out
    assert said(0.0, found=4, annotated=4, clear_found=0, clear=0) == ""  # no threshold: every region kept


def test_fit_says_what_to_do_when_the_net_misses_its_annotated_voids(capsys):
    from types import SimpleNamespace

    from neuradiff.cli.fit import print_annotated_voids

    def said(**seen):
        print_annotated_voids(SimpleNamespace(info={"annotated_voids": seen}))
        return capsys.readouterr()

    out = said(found=9, annotated=10, clear_found=9, clear=10)
    assert "reproduces 9 of the 10 annotated voids" in out.out and out.err == ""
    out = said(found=3, annotated=10, clear_found=3, clear=10)
    assert "reproduces 3 of the 10" in out.out and "pretrain_iters" in out.err
    # most annotated voids fainter than the noise, the clear ones reproduced: no advice to train longer
    out = said(found=219, annotated=439, clear_found=150, clear=154)
    assert "150 of the 154 that stand out" in out.out and "69 of the 285 fainter ones" in out.out
    assert out.err == ""
    out = said(found=40, annotated=100, clear_found=30, clear=60)
    assert "30 of the 60 that stand out" in out.out and "pretrain_iters" in out.err
    out = said(found=3, annotated=10)  # a model written before the clear voids were counted
    assert "reproduces 3 of the 10 annotated voids on their own frames (IoU ≥ 0.5)." in out.out and out.err
    print_annotated_voids(SimpleNamespace(info={}))  # models fitted before the count: nothing said
    assert capsys.readouterr().out == ""
