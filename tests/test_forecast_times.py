"""Forecasts of a recording with uneven frame times simulate each step for its real duration; even times keep the
one-run forecast bit for bit."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import torch

from neuradiff.core.errors import NeuradiffError
from neuradiff.io.stream import VideoSource
from neuradiff.io.video import Calibration, read_video
from neuradiff.methods import NeuraDiffModel, load_model, simulate_forward
from neuradiff.methods.neuradiff import START_C_V_MIN
from neuradiff.nets import NetConfig, RecognitionNet
from neuradiff.physics import Simulator, VoidParameters, carried_state, matrix_state, single_void
from neuradiff.workflows import forecast_intervals, run_forecast

SIM = Simulator(integrator="imex", dt=0.25, time_per_frame=1.0)
UNEVEN = [0.0, 49.0, 126.0, 203.0, 241.5, 318.5]  # 49 s, 77 s, 77 s, 38.5 s, 77 s: median 77 s


def _fields(fc) -> np.ndarray:
    assert fc.fields is not None
    return fc.fields


def test_uneven_steps_are_chained_runs_of_their_real_duration():
    state = single_void((32, 32), 7.0)
    params = VoidParameters()
    durations = np.array([49.0, 77.0, 38.5]) / 77.0
    fc = simulate_forward(SIM, state, params, 3, start=2, intervals=durations)
    fields = _fields(fc)
    assert fc.frames.tolist() == [2, 3, 4, 5]
    expected = [state]
    for d in durations:
        expected.append(SIM.run(expected[-1], params, float(d)).states[-1])
    assert np.array_equal(fields, torch.cat(expected).numpy())
    # frame k is a simulation of t_k - t_start: one run of that fractional number of intervals gives it within
    # the time discretisation (the chained runs take other step lengths), far closer than the even forecast
    even = _fields(simulate_forward(SIM, state, params, 3))
    for k in range(1, 4):
        whole = SIM.run(state, params, float(durations[:k].sum())).states[-1, 0].numpy()
        gap = np.abs(fields[k] - whole).max()
        assert gap == 0.0 if k == 1 else gap < 0.02
        assert gap < 0.25 * np.abs(even[k] - whole).max()
    assert np.array_equal(_fields(simulate_forward(SIM, state, params, 3, intervals=np.ones(3))), even)
    with pytest.raises(ValueError, match="3 positive step durations"):
        simulate_forward(SIM, state, params, 3, intervals=np.array([1.0, -1.0, 1.0]))


def test_forecast_intervals_from_the_recording_times():
    cal = Calibration(frame_interval_s=77.0, frame_times_s=np.array(UNEVEN))
    assert forecast_intervals(cal, 1, 6, 6) == pytest.approx([1.0, 1.0, 0.5, 1.0, 1.0, 1.0])
    assert forecast_intervals(cal, 1, 2, 6) is None  # 77 s, 77 s: even over the forecast
    assert forecast_intervals(Calibration(frame_interval_s=3.0, frame_times_s=np.arange(5) * 3.0), 0, 6, 5) is None
    assert forecast_intervals(Calibration(frame_interval_s=3.0), 0, 4, 5) is None


def _model_and_video(tmp_path, times, info=None):
    torch.manual_seed(0)
    model = NeuraDiffModel(RecognitionNet(NetConfig(width=4, depth=1)), VoidParameters(), SIM, dict(info or {}))
    model.save(tmp_path / "model")
    yy, xx = np.mgrid[:24, :24]
    frames = np.stack([0.8 - 0.5 * ((yy - 12) ** 2 + (xx - 12) ** 2 < (4 + k) ** 2) for k in range(len(times))])
    tifffile.imwrite(tmp_path / "video.tif", (frames * 255).astype(np.uint8))
    rows = "".join(f"{k},{t}\n" for k, t in enumerate(times))
    (tmp_path / "video_frame_times.csv").write_text("frame,time_s\n" + rows)
    return load_model(tmp_path / "model"), frames


def test_forecast_command_simulates_uneven_intervals_for_their_duration(tmp_path):
    fitted, _ = _model_and_video(tmp_path, UNEVEN)
    run_forecast(tmp_path / "model", tmp_path / "video.tif", tmp_path / "fc", frame=0, steps=6)
    got = np.load(tmp_path / "fc" / "forecast.npz")
    frames = read_video(tmp_path / "video.tif").frames
    assert isinstance(fitted, NeuraDiffModel)
    state = fitted.start_state(frames, 0)
    expected = [state]
    for d in [49 / 77, 1.0, 1.0, 0.5, 1.0, 1.0]:  # beyond the recording: one median interval a step
        expected.append(fitted.simulator.run(expected[-1], fitted.params, d).states[-1])
    fields = torch.cat(expected).numpy()
    assert np.array_equal(got["eta"], fields[:, 2]) and np.array_equal(got["c_v"], fields[:, 0])
    settings = json.loads((tmp_path / "fc" / "provenance.json").read_text())["settings"]
    assert settings["step_intervals"] == pytest.approx([49 / 77, 1, 1, 0.5, 1, 1])


def test_forecast_command_with_even_times_is_the_one_run_forecast(tmp_path):
    fitted, _ = _model_and_video(tmp_path, [0.0, 5.0, 10.0, 15.0])
    run_forecast(tmp_path / "model", tmp_path / "video.tif", tmp_path / "fc", frame=1, steps=4)
    frames = read_video(tmp_path / "video.tif").frames
    before = fitted.forecast(frames, 1, 4)
    got = np.load(tmp_path / "fc" / "forecast.npz")
    assert np.array_equal(got["eta"], before.eta) and np.array_equal(got["frame"], before.frames)
    assert json.loads((tmp_path / "fc" / "provenance.json").read_text())["settings"]["step_intervals"] is None


@pytest.mark.parametrize("carried", [False, True])
def test_forecast_command_reads_only_its_start_frame(tmp_path, monkeypatch, carried):
    """A long recording is not loaded to forecast from one of its frames: only frame ``--frame`` is read, and with
    the matrix start carried from the calibration's first frame (1 here), that frame too."""
    info = {"start_fields": "matrix", "start_frame": 1} if carried else None
    _model_and_video(tmp_path, [0.0, 5.0, 10.0, 15.0, 20.0], info)
    read: list[tuple[int, int]] = []
    original = VideoSource.read

    def counting(self, start, stop):
        read.append((int(start), int(stop)))
        return original(self, start, stop)

    monkeypatch.setattr(VideoSource, "read", counting)
    run_forecast(tmp_path / "model", tmp_path / "video.tif", tmp_path / "fc", frame=3, steps=2)
    assert read and set(read) == ({(1, 2), (3, 4)} if carried else {(3, 4)}), read
    monkeypatch.undo()
    frames = read_video(tmp_path / "video.tif").frames
    fitted = load_model(tmp_path / "model")
    got = np.load(tmp_path / "fc" / "forecast.npz")
    assert np.array_equal(got["eta"], fitted.forecast(frames, 3, 2).eta)  # the same forecast as from the whole video


def test_a_start_state_keeps_c_v_above_its_floor():
    # A net whose c_v head gives almost no vacancies: the forecast starts from c_v = START_C_V_MIN there (a tiny
    # c_v beside large ones made the explicit step need over 1000 sub-steps); c_i and eta are left as they are.
    torch.manual_seed(0)
    net = RecognitionNet(NetConfig(width=4, depth=1))
    with torch.no_grad():
        net.head.bias.view(3, -1)[0] = -30.0
    model = NeuraDiffModel(net, VoidParameters(), SIM)
    frames = np.random.default_rng(0).normal(100, 10, (2, 16, 16)).astype(np.float32)
    state = model.start_state(frames, 1)
    raw = net.eval()(torch.from_numpy(frames[1:]), torch.ones(1))
    assert float(raw[:, 0].max()) < 1e-6
    assert torch.all(state[:, 0] == START_C_V_MIN)
    assert torch.equal(state[:, 1:], raw[:, 1:].detach())


def _matrix_model(n_frames: int):
    """A small net, a model with the matrix start (c_v 0.2, c_i 1e-3, calibrated from frame 1) and noise frames."""
    torch.manual_seed(0)
    net = RecognitionNet(NetConfig(width=4, depth=1))
    info = {"start_fields": "matrix", "start_matrix": {"c_v": 0.2, "c_i": 1e-3}, "start_frame": 1}
    frames = np.random.default_rng(0).normal(100, 10, (n_frames, 16, 16)).astype(np.float32)
    return net, NeuraDiffModel(net, VoidParameters(), SIM, info), frames


def test_a_matrix_start_state_takes_c_from_the_recognised_voids():
    # start_fields "matrix": eta as recognised (annotation overlaid), c_v = 1 in voids and the matrix value in the
    # solid, c_i the matrix value; the net's latent c_v, c_i are not read.
    net, model, frames = _matrix_model(2)
    ann = np.full((16, 16), 255, np.uint8)
    ann[:4], ann[4:8] = 1, 0
    state = model.start_state(frames, 1, ann)
    raw = net.eval()(torch.from_numpy(frames[1:]), torch.ones(1)).detach()
    eta = state[0, 2]
    assert torch.all(eta[:4] == 1) and torch.all(eta[4:8] == 0)
    assert torch.equal(eta[8:], raw[0, 2, 8:])
    assert torch.allclose(state[0, 0], eta.clamp(0, 1) + (1 - eta.clamp(0, 1)) * 0.2)
    assert torch.all(state[0, 0, :4] == 1) and torch.allclose(state[0, 0, 4:8], torch.tensor(0.2))
    assert torch.all(state[0, 1] == 1e-3)
    # A model saved without the key (before the setting existed) keeps the net's fields.
    old = NeuraDiffModel(net, VoidParameters(), SIM)
    assert torch.equal(old.start_state(frames, 1)[:, 1], raw[:, 1])


def test_a_later_start_carries_the_fields_the_physics_reached_from_the_first_frame():
    # After the calibration's first frame, c_v and c_i come from the physics run from there with the model's
    # parameters (frame by frame), carried onto the voids recognised at the start frame.
    net, model, frames = _matrix_model(4)
    at_first = model.start_state(frames, 1)
    assert torch.equal(
        model.start_state(frames, 0), matrix_state(model.start_state(frames, 0)[:, 2], c_v=0.2, c_i=1e-3)
    )
    reached = SIM.run(SIM.run(at_first, model.params, 1.0).states[-1], model.params, 1.0).states[-1]
    eta = net.eval()(torch.from_numpy(frames[3:]), torch.full((1,), 3.0))[:, 2].detach()
    later = model.start_state(frames, 3)
    assert torch.allclose(later, carried_state(eta, reached), atol=1e-6)
    assert torch.equal(later[:, 1], reached[:, 1]) and torch.equal(later[:, 2], eta)


def test_a_later_start_simulates_each_history_interval_for_its_real_duration():
    net, model, frames = _matrix_model(4)
    at_first = model.start_state(frames, 1)
    reached = SIM.run(SIM.run(at_first, model.params, 0.5).states[-1], model.params, 0.25).states[-1]
    eta = net.eval()(torch.from_numpy(frames[3:]), torch.full((1,), 3.0))[:, 2].detach()
    later = model.start_state(frames, 3, history_intervals=np.array([0.5, 0.25]))
    assert torch.allclose(later, carried_state(eta, reached), atol=1e-6)
    even = model.start_state(frames, 3)
    assert float((later[:, 1] - even[:, 1]).abs().max()) > 1e-4  # the durations matter: c_i relaxes less in 0.75
    assert torch.equal(model.start_state(frames, 3, history_intervals=np.ones(2)), model.start_state(frames, 3))
    with pytest.raises(NeuradiffError, match="history before frame 3: the forecast needs 2 positive"):
        model.start_state(frames, 3, history_intervals=np.ones(3))


def test_forecast_command_simulates_the_history_for_the_recording_times(tmp_path):
    # Calibrated from frame 1; a forecast from frame 4 simulates frames 1 → 4 first, 77, 77 and 38.5 s apart.
    fitted, _ = _model_and_video(tmp_path, UNEVEN, {"start_fields": "matrix", "start_frame": 1})
    run_forecast(tmp_path / "model", tmp_path / "video.tif", tmp_path / "fc", frame=4, steps=1)
    frames = read_video(tmp_path / "video.tif").frames
    assert isinstance(fitted, NeuraDiffModel)
    expected = fitted.forecast(frames, 4, 1, history_intervals=np.array([1.0, 1.0, 0.5]))
    got = np.load(tmp_path / "fc" / "forecast.npz")
    assert np.array_equal(got["c_v"], _fields(expected)[:, 0])
    assert not np.array_equal(got["c_v"][0], _fields(fitted.forecast(frames, 4, 1))[0, 0])
    settings = json.loads((tmp_path / "fc" / "provenance.json").read_text())["settings"]
    assert settings["history_intervals"] == pytest.approx([1.0, 1.0, 0.5])


def test_carried_fields_keep_the_simulated_solid_and_void_values_across_an_outline_that_moved():
    sim = matrix_state(torch.zeros(1, 8, 8), c_v=0.1, c_i=2e-3)
    sim[0, 2, 2:6, 2:6] = 1.0  # a simulated void
    sim[0, 0, 2:6, 2:6] = 1.1
    sim[0, 0, :, 7] = 0.15  # a solid column with more vacancies
    seen = torch.zeros(1, 8, 8)
    seen[0, 2:6, 3:7] = 1.0  # the recognised void, one pixel to the right
    state = carried_state(seen, sim)
    c_v = state[0, 0]
    assert torch.allclose(c_v[2:6, 3:7], torch.tensor(1.1))  # the simulated voids' mean inside the seen void
    assert torch.allclose(c_v[2:6, 2], torch.tensor(0.1))  # left behind by the void: the nearest solid's value
    assert torch.allclose(c_v[0, 7], torch.tensor(0.15)) and torch.allclose(c_v[0, 0], torch.tensor(0.1))
    assert torch.equal(state[0, 1], sim[0, 1]) and torch.equal(state[0, 2], seen[0])
