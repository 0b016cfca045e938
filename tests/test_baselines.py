"""The comparison methods: start states from annotations, the residual, the surrogate, the physics-only fit."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from neuradiff.evaluation.scores import mean_radius_px
from neuradiff.methods.physics_only import fit_physics_only, state_from_annotation
from neuradiff.methods.residual import midpoint_residual
from neuradiff.methods.supervised import SupervisedObjective, supervised_iterations
from neuradiff.methods.surrogate import SurrogateConfig, fit_surrogate, surrogate_rollout
from neuradiff.nets import NetConfig, RecognitionNet
from neuradiff.physics import VoidModel, VoidParameters, rollout
from neuradiff.training import FitConfig, TrainingData


def test_state_from_annotation_uses_the_priors():
    ann = np.array([[[0, 1], [255, 1]]], dtype=np.uint8)
    s = state_from_annotation(ann, c_v_matrix=0.1, c_i_matrix=1e-3)
    assert s.shape == (1, 3, 2, 2)
    np.testing.assert_allclose(s[0, 2].numpy(), [[0, 1], [0, 1]])  # unknown taken as solid
    np.testing.assert_allclose(s[0, 0].numpy(), [[0.1, 1], [0.1, 1]])
    np.testing.assert_allclose(s[0, 1].numpy(), 1e-3)


def test_supervised_config_keeps_the_budget_and_learns_no_physics():
    cfg = FitConfig(pretrain_iters=7, joint_iters=3)
    assert supervised_iterations(cfg) == 10
    frames = np.random.default_rng(0).normal(100, 10, (4, 16, 16)).astype(np.float32)
    ann = np.full(frames.shape, 255, np.uint8)
    ann[0] = 0
    objective = SupervisedObjective(TrainingData(frames, ann, 1.0, 1.0, 1.0), cfg)
    assert list(objective.modules()) == ["net"]  # no physical parameter is trained
    assert [(p.name, p.iterations) for p in objective.phases()] == [("pretrain", 10)]


def test_midpoint_residual_is_small_for_the_true_parameters_only():
    model = VoidModel()
    true = VoidParameters.paper()
    yy, xx = np.mgrid[:32, :32]
    eta = 0.5 * (1 - np.tanh((np.hypot(yy - 15.5, xx - 15.5) - 8) / 1.5))
    s0 = torch.from_numpy(np.stack([eta + (1 - eta) * 0.12, np.full_like(eta, 7e-4), eta]))[None]
    s0 = rollout(model, s0, true, dt=0.005, n_steps=200, diagnostics=False).final  # past the fast transient
    delta, n = 0.05, 50
    s1 = rollout(model, s0, true, dt=delta / n, n_steps=n, diagnostics=False).final
    good = float(midpoint_residual(model, s0, s1, true, delta, c_i_scale=1e-3))
    wrong = dataclasses.replace(true, L=torch.tensor(5.0, dtype=torch.float64))
    bad = float(midpoint_residual(model, s0, s1, wrong, delta, c_i_scale=1e-3))
    assert good < 0.01 * bad


@pytest.mark.slow
def test_surrogate_learns_a_fixed_map_and_rolls_out():
    yy, xx = np.mgrid[:16, :16]
    eta = np.stack([(np.hypot(yy - 8, xx - 8) < r).astype(np.float32) for r in (6, 6, 6, 6)])
    cfg = SurrogateConfig(iters=40, batch=2, lr=5e-3, net={"embedding": "none", "width": 4, "depth": 1})
    recogniser = RecognitionNet(NetConfig(width=4, depth=1))
    fit = fit_surrogate(eta, recogniser, cfg)
    out = surrogate_rollout(fit.model.surrogate, eta[0], 3)
    assert out.shape == (4, 16, 16)
    np.testing.assert_array_equal(out[0], eta[0])
    assert ((out[1] >= 0.5) == (eta[1] >= 0.5)).mean() > 0.95  # a steady void stays put
    with pytest.raises(Exception, match="eta maps"):
        fit_surrogate(eta[:1], recogniser, cfg)


@pytest.mark.slow
def test_physics_only_fit_lowers_its_loss():
    model = VoidModel()
    true = VoidParameters.paper()
    yy, xx = np.mgrid[:24, :24]
    eta0 = (np.hypot(yy - 11.5, xx - 11.5) < 7).astype(np.float64)
    s = torch.from_numpy(np.stack([eta0 + (1 - eta0) * 0.122, np.full_like(eta0, 6.9e-4), eta0]))[None]
    traj = rollout(model, s.float(), true, dt=0.02, n_steps=6 * 60, save_every=60, diagnostics=False, integrator="imex")
    eta = traj.states[:, 0, 2].numpy()
    ann = np.full(eta.shape, 255, np.uint8)
    for k in (0, 3, 6):
        ann[k] = (eta[k] >= 0.5).astype(np.uint8)
    frames = eta.astype(np.float32)
    data = TrainingData(frames, ann, 1.0, 1.0, 1.2)
    cfg = FitConfig(joint_iters=6, eval_every=3, lr_phys=0.05, max_gap=6)
    fit = fit_physics_only(data, cfg)  # frame 3 is held out: one training pair, 0 → 6
    losses = [r["loss_sim"] for r in fit.history]
    assert len(losses) == 6 and all(np.isfinite(losses))
    assert losses[-1] < losses[0]
    assert set(fit.model.info["learned"]) == set(cfg.learned_names())
    assert "val_loss" in fit.history[2]


def test_mean_radius_of_hand_made_disks():
    m = np.zeros((2, 40, 40), bool)
    m[0, 2:6, 2:6] = True  # area 16
    m[0, 20:30, 20:30] = True  # area 100
    r = mean_radius_px(m)
    assert r[0] == pytest.approx((np.sqrt(16 / np.pi) + np.sqrt(100 / np.pi)) / 2)
    assert np.isnan(r[1])
