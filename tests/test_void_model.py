import math

import pytest
import torch

from neuradiff.physics import VoidModel, VoidParameters, equilibrium_vacancy_fraction, rollout, single_void
from neuradiff.physics.parameters import LearnableParameters
from physics_helpers import smooth_void_state

DISCS = ["conservative", "reference"]


@pytest.mark.parametrize("disc", DISCS)
def test_chemical_potential_is_the_gradient_of_the_free_energy(disc):
    # ∂F_h/∂φ_ij = dx² μ_ij (energy identity), away from the reference code's log floor.
    model, p, dx = VoidModel(disc), VoidParameters(), 0.8
    state = smooth_void_state().requires_grad_(True)
    (grad,) = torch.autograd.grad(model.free_energy(state, p, dx).sum(), state)
    mu = model.chemical_potential(state, p, dx)
    assert torch.allclose(grad, dx * dx * mu, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("disc", DISCS)
@pytest.mark.parametrize("preset", [VoidParameters.paper(), VoidParameters.petsc()])
def test_homogeneous_matrix_equilibrium(disc, preset):
    # eta = 0, no sources: mu_v = 0  <=>  c_v/(1 - c_v - c_i) = exp(-E_v/kBT) (0.168 for the paper's set).
    c_i = 1e-3
    c_v = equilibrium_vacancy_fraction(preset, c_i)
    assert c_v / (1 - c_v - c_i) == pytest.approx(math.exp(-preset.E_v / preset.kBT), rel=1e-12)
    # The conservative entropy is exact above its floor: dilute sets (PETSc, c_eq = 6.9e-4) need a floor below c_eq.
    model = VoidModel(disc, log_floor=1e-5) if disc == "conservative" and c_v < 1e-3 else VoidModel(disc)
    state = torch.zeros((1, 3, 8, 8), dtype=torch.float64)
    state[:, 0], state[:, 1] = c_v, c_i
    mu_v = model.chemical_potential(state, preset, 1.0)[:, 0]
    assert float(mu_v.abs().max()) < 1e-10
    state[:, 0] = 1.2 * c_v  # supersaturated: vacancies would leave (mu_v > 0)
    assert float(model.chemical_potential(state, preset, 1.0)[:, 0].min()) > 0
    if preset.E_v == 8.0:
        assert equilibrium_vacancy_fraction(preset) == pytest.approx(0.168, abs=5e-4)


def test_conservative_scheme_conserves_mass_to_round_off():
    p = VoidParameters(R_bulk=0.0, R_surf=0.0)
    state = single_void((32, 32), 7.0, dtype=torch.float64)
    for integrator, dt in (("euler", 0.02), ("spectral", 0.1)):
        tr = rollout(VoidModel("conservative"), state, p, dt=dt, n_steps=200, save_every=50, integrator=integrator)
        for name in ("total_c_v", "total_c_i"):
            tot = tr.diagnostics[name][:, 0]
            assert float((tot - tot[0]).abs().max() / tot[0]) < 1e-12, (integrator, name)
    # The reference form (M∇²μ and the clamp) does not conserve vacancies.
    ref = rollout(VoidModel("reference"), state, p, dt=0.02, n_steps=200, save_every=200)
    tot = ref.diagnostics["total_c_v"][:, 0]
    assert float((tot[-1] - tot[0]).abs() / tot[0]) > 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("integrator,dt", [("euler", 0.02), ("spectral", 0.05), ("spectral", 0.5)])
def test_free_energy_does_not_increase_without_sources(integrator, dt):
    p = VoidParameters(R_bulk=0.0, R_surf=0.0)
    state = single_void((32, 32), 7.0, dtype=torch.float64)
    tr = rollout(
        VoidModel("conservative"), state, p, dt=dt, n_steps=round(30 / dt), save_every=1, integrator=integrator
    )
    f = tr.diagnostics["free_energy"][:, 0]
    assert float(torch.diff(f).max()) <= 1e-9 * float(f.abs().max())
    assert float(f[-1]) < float(f[0])


@pytest.mark.slow
def test_voids_shrink_with_the_paper_parameters():
    # METHOD.md §2: with the paper's values an r = 20 void shrinks steadily (reference: ~75 % in 5000 steps).
    state = single_void((64, 64), 10.0, dtype=torch.float32)
    for disc in DISCS:
        tr = rollout(VoidModel(disc), state, VoidParameters(), dt=0.02, n_steps=500, save_every=250)
        area = tr.diagnostics["void_area"][:, 0]
        assert float(area[-1]) < 0.97 * float(area[0]), disc
        assert bool((torch.diff(area) <= 0).all()), disc


def test_cascades_follow_the_gate_and_bias():
    model, p = VoidModel("reference"), VoidParameters(V_g=1.0, p_casc=0.5, noise=0.0)
    state = smooth_void_state(n=16)
    gen = torch.Generator().manual_seed(3)
    draws = model.draw(gen, tuple(state.shape), state.dtype)
    inc = model.forcing_increment(state, p, draws, 1.0, 1.0)
    hit = (state[:, 2] < 0.8) & (draws["gate"] <= 0.5)
    P = draws["amplitude"] * hit
    assert torch.allclose(inc[:, 0], 0.3 * P) and torch.allclose(inc[:, 1], 0.7 * P)
    assert torch.allclose(inc[:, 2], -0.4 * P)
    assert 0 < int(hit.sum()) < hit.numel()


@pytest.mark.parametrize("bad", [{"kBT": -1.0}, {"D_v": float("nan")}, {"L": float("inf")}, {"bias": 1.5}])
def test_bad_parameters_raise_one_clear_error(bad):
    name = next(iter(bad))
    with pytest.raises(ValueError, match=name):
        VoidParameters(**bad)


def test_unknown_names_and_shapes_raise():
    with pytest.raises(ValueError, match="unknown parameter"):
        VoidParameters().replace(E_x=1.0)
    with pytest.raises(ValueError, match="discretisation"):
        VoidModel("upwind")
    with pytest.raises(ValueError, match=r"\[batch, 3, H, W\]"):
        rollout(VoidModel(), torch.zeros(1, 2, 8, 8), VoidParameters(), dt=0.02, n_steps=1)
    with pytest.raises(ValueError, match="dt"):
        rollout(VoidModel(), single_void((16, 16), 3.0), VoidParameters(), dt=0.0, n_steps=1)


def test_learnable_parameters_stay_positive_and_bounded():
    lp = LearnableParameters(VoidParameters())
    assert set(lp.learned) == {"E_v", "E_i", "kBT", "kappa_v", "kappa_i", "kappa_eta", "D_v", "D_i", "L"}
    p = lp()
    for name, v in VoidParameters().as_floats().items():
        assert float(getattr(p, name).detach()) == pytest.approx(v, rel=1e-9)
    with torch.no_grad():
        for raw in lp.raw.values():
            raw.fill_(-1e3)  # an optimiser gone wild
    p = lp()
    for name in lp.learned:
        lo, hi = lp.bounds[name]
        assert lo * (1 - 1e-9) <= float(getattr(p, name).detach()) <= hi
    frozen = LearnableParameters(VoidParameters(), learn=["L"])
    assert list(frozen.raw) == ["L"] and sum(x.numel() for x in frozen.parameters()) == 1
