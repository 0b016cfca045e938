import pytest
import torch

from neuradiff.core.errors import SimulationError
from neuradiff.physics import (
    AllenCahnModel,
    AllenCahnParameters,
    RandomForcing,
    RecordedForcing,
    VoidModel,
    VoidParameters,
    explicit_euler,
    rollout,
    single_void,
)
from neuradiff.physics.initial import disk_indicator, void_disks


def test_allen_cahn_disk_shrinks_by_curvature():
    # R(t)² = R0² − 2Lκt (sharp-interface limit); interface width √(κ/W) = 2 dx (resolved).
    p = AllenCahnParameters(W=1.0, kappa=4.0, L=1.0)
    r0, n = 30.0, 128
    eta = disk_indicator((n, n), [(n / 2, n / 2, r0)], width=(2 * p.kappa / p.W) ** 0.5).view(1, 1, n, n)
    dt, steps = 0.04, 1500
    tr = rollout(AllenCahnModel(), eta, p, dt=dt, n_steps=steps, save_every=300)
    r = tr.diagnostics["radius"][:, 0]
    t = torch.tensor(tr.times, dtype=torch.float64)
    r2_expected = r[0] ** 2 - 2 * p.L * p.kappa * t
    err = ((r**2 - r2_expected) / r2_expected).abs()
    assert float(err.max()) < 0.02
    assert float(r[-1]) < 0.75 * float(r[0])  # the disk really shrank (measured: 30.1 → 20.8, error 1.0 %)


@pytest.mark.slow
def test_spectral_and_explicit_agree_and_converge_at_first_order():
    state = void_disks((32, 32), [(16, 16, 7.0)], width=1.5, dtype=torch.float64)
    model, p = VoidModel("conservative"), VoidParameters()
    gaps = []
    for dt in (0.01, 0.005):
        a = rollout(model, state, p, dt=dt, n_steps=round(2 / dt), integrator="euler").final
        b = rollout(model, state, p, dt=dt, n_steps=round(2 / dt), integrator="spectral").final
        gaps.append(float((a - b).abs().max()))
        assert gaps[-1] < 0.1 * float((a - state).abs().max())  # the fields moved 10× more than they differ
    assert 0.4 < gaps[1] / gaps[0] < 0.6  # both are first order in dt: halving dt halves the gap


@pytest.mark.slow
def test_imex_agrees_with_euler_at_first_order_and_needs_fewer_substeps():
    # A void whose inside holds extra vacancies: the η double-well curvature (∝ f_s) dominates the stiffness.
    state = void_disks((32, 32), [(16, 16, 7.0)], width=1.5, dtype=torch.float64)
    state[:, 0] = state[:, 0] * 1.2
    model, p = VoidModel("conservative"), VoidParameters()
    fine = rollout(model, state, p, dt=0.002, n_steps=1000, integrator="euler").final
    gaps = []
    for dt in (0.02, 0.01):
        imex = rollout(model, state, p, dt=dt, n_steps=round(2 / dt), integrator="imex")
        gaps.append(float((imex.final - fine).abs().max()))
    assert gaps[0] < 0.1 * float((fine - state).abs().max())
    assert 0.35 < gaps[1] / gaps[0] < 0.65  # first order in dt, converging to the explicit solution
    long_euler = rollout(model, state, p, dt=0.2, n_steps=10, integrator="euler")
    long_imex = rollout(model, state, p, dt=0.2, n_steps=10, integrator="imex")
    assert long_imex.substeps * 1.5 < long_euler.substeps  # the pointwise stiffness no longer limits the step
    assert float((long_imex.final - long_euler.final).abs().max()) < 0.05


def test_imex_keeps_a_steady_state():
    # Uniform matrix at its own equilibrium under transport: only the local terms act, and a fixed point of
    # the rate stays fixed whatever dt.
    state = torch.zeros(1, 3, 8, 8, dtype=torch.float64)
    model, p = VoidModel("conservative"), VoidParameters().replace(R_bulk=0.0, R_surf=0.0)
    state[:, 0], state[:, 1], state[:, 2] = 0.2, 0.01, 0.0
    r = model.rate(state, p, 1.0)
    assert float(r[:, :2].abs().max()) < 1e-12  # uniform concentrations do not move without recombination
    out = rollout(model, state, p, dt=5.0, n_steps=3, integrator="imex", guard="off").final
    assert torch.allclose(out[:, :2], state[:, :2], atol=1e-12)


def test_stability_guard_fires_and_substeps():
    state = single_void((32, 32), 7.0, dtype=torch.float64)
    model, p = VoidModel("reference"), VoidParameters()
    with pytest.raises(SimulationError, match="stability limit"):
        explicit_euler(model, state, p, 0.15, guard="raise")
    guarded = rollout(model, state, p, dt=0.15, n_steps=20, guard="substep")
    assert guarded.substeps > 20
    fine = rollout(model, state, p, dt=0.02, n_steps=150)
    assert float((guarded.final - fine.final).abs().max()) < 0.05
    # Without the guard the reference scheme collapses silently, as the published code does.
    blind = rollout(model, state, p, dt=0.3, n_steps=20, guard="off")
    assert float((blind.final - fine.final).abs().max()) > 0.2


def test_nan_names_step_and_field():
    state = single_void((16, 16), 3.0, dtype=torch.float64)
    bad = state.clone()
    bad[0, 1, 3, 3] = float("nan")
    with pytest.raises(SimulationError, match=r"c_i at step 0"):
        rollout(VoidModel(), bad, VoidParameters(), dt=0.02, n_steps=3)
    with pytest.raises(SimulationError, match="NaN/Inf in field"):
        rollout(VoidModel("conservative"), state, VoidParameters(D_v=1e6, kBT=0.01), dt=0.02, n_steps=50, guard="off")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_finite_check_finds_every_kind_of_bad_value_and_only_those(dtype):
    from neuradiff.physics.rollout import check_finite

    model = VoidModel()
    state = single_void((16, 16), 3.0, dtype=dtype).repeat(2, 1, 1, 1)
    check_finite(state, model, 0)
    for field, value in [(0, float("inf")), (2, float("-inf")), (1, float("nan"))]:
        bad = state.clone()
        bad[1, field, 15, 15] = value
        with pytest.raises(SimulationError, match=f"{model.field_names[field]} at step 4"):
            check_finite(bad, model, 4)
    both = state.clone()
    both[0, 0, 0, 0], both[1, 0, 1, 1] = float("inf"), float("-inf")  # their sum is NaN; each is still named
    with pytest.raises(SimulationError, match=model.field_names[0]):
        check_finite(both, model, 1)
    huge = state.clone()
    huge[:, :, :4, :4] = torch.finfo(dtype).max  # a sum that overflows, but every value is finite
    check_finite(huge, model, 2)


@pytest.mark.parametrize("disc", ["reference", "conservative"])
def test_replayed_randomness_is_bit_identical(disc):
    model, p = VoidModel(disc), VoidParameters(p_casc=0.2, V_g=0.5)
    state = single_void((24, 24), 5.0, dtype=torch.float32)

    def run(forcing):
        return rollout(model, state, p, dt=0.02, n_steps=30, forcing=forcing, start_step=7).final

    a, b = run(RandomForcing(11)), run(RandomForcing(11))
    assert torch.equal(a, b)
    recorded = RecordedForcing.capture(RandomForcing(11), model, state, range(7, 37))
    assert torch.equal(run(recorded), a)
    assert not torch.equal(run(RandomForcing(12)), a)
    assert not torch.equal(run(None), a)
    with pytest.raises(ValueError, match="no step"):
        rollout(model, state, p, dt=0.02, n_steps=31, forcing=recorded, start_step=7)
