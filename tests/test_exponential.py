"""The exponential integrators: ETDRK2 steps, their embedded error estimate and the adaptive driver."""

import math

import pytest
import torch

from neuradiff.core.errors import SimulationError
from neuradiff.physics import (
    AllenCahnModel,
    AllenCahnParameters,
    SpinodalModel,
    SpinodalParameters,
    adaptive_spectral,
    etdrk2_spectral,
    pfhub1_initial_condition,
    rollout,
)
from neuradiff.physics.etd import ETDSplit, etd_coefficients, wavenumber_squared


def smooth_field(n: int, seed: int, mean: float = 0.5, amplitude: float = 0.05, modes: int = 4) -> torch.Tensor:
    """A seeded periodic field of the lowest ``modes`` wavenumbers, ``[1, 1, n, n]`` float64."""
    g = torch.Generator().manual_seed(seed)
    spec = torch.zeros(n, n // 2 + 1, dtype=torch.complex128)
    re = torch.randn(2 * modes + 1, modes + 1, generator=g, dtype=torch.float64)
    im = torch.randn(2 * modes + 1, modes + 1, generator=g, dtype=torch.float64)
    rows = list(range(modes + 1)) + list(range(n - modes, n))
    spec[rows, : modes + 1] = torch.complex(re, im)
    spec[0, 0] = 0
    x = torch.fft.irfft2(spec, s=(n, n))
    x = x / x.abs().amax() * amplitude + mean
    return x.view(1, 1, n, n)


def rms(x: torch.Tensor) -> float:
    return float(x.pow(2).mean().sqrt())


def test_etd_coefficients_match_the_closed_form_on_both_sides_of_the_series():
    a = torch.tensor([0.0, 1e-6, 0.05, 0.0999, 0.1001, 0.3, 2.0, 40.0, 900.0], dtype=torch.float64)
    h = 1.0
    e, p1, p2 = etd_coefficients(a, h)
    z = -a[1:] * h
    # closed forms in extended precision (long double is not portable: use the Taylor sums in float64
    # only where they are exact to round-off, and the closed form where it has no cancellation)
    phi1 = torch.expm1(z) / z
    phi2 = (torch.expm1(z) - z) / (z * z)
    far = z.abs() > 0.2
    assert torch.allclose(p1[1:][far], phi1[far], rtol=1e-14, atol=0)
    assert torch.allclose(p2[1:][far], phi2[far], rtol=1e-13, atol=0)
    assert float(p1[0]) == 1.0 and float(p2[0]) == 0.5
    assert torch.equal(e, torch.exp(-a * h))
    # continuity across the switch to the series at |z| = 0.1
    assert abs(float(p2[3] - p2[4])) < 1e-4 and abs(float(p1[3] - p1[4])) < 1e-4


def test_wavenumber_symbols():
    five = wavenumber_squared((16, 16), 0.5, "five-point")
    spec = wavenumber_squared((16, 16), 0.5, "spectral")
    assert five.shape == spec.shape == (16, 9)
    # agree at long waves (k dx ≪ 1), five-point is smaller at short ones
    assert float((five[1, 0] - spec[1, 0]).abs() / spec[1, 0]) < 0.02
    assert float(five[8, 8]) < float(spec[8, 8])
    with pytest.raises(ValueError, match="laplacian"):
        wavenumber_squared((16, 16), 1.0, "nine-point")


@pytest.mark.slow
def test_fixed_step_etdrk2_is_second_order_and_its_error_estimate_is_of_second_order_locally():
    model, p = SpinodalModel(), SpinodalParameters()
    c = smooth_field(32, seed=1)
    ref = rollout(model, c, p, dt=0.0025, n_steps=1600, integrator="etdrk2", diagnostics=False).final
    errs = [
        rms(rollout(model, c, p, dt=dt, n_steps=round(4.0 / dt), integrator="etdrk2", diagnostics=False).final - ref)
        for dt in (0.1, 0.05, 0.025)
    ]
    ratios = [errs[0] / errs[1], errs[1] / errs[2]]
    assert all(3.5 < r < 4.5 for r in ratios), (errs, ratios)  # measured 3.61, 3.82
    # The embedded estimate ‖φ₂ − φ₁‖ of one step is the local error of the first-order step (ETD1): O(h²),
    # close to the true one, and above the second-order solution's own local error (O(h³) as h → 0; measured
    # ratios 4.1, 4.6 at these steps, on the way to 8), which the solver advances with. (On sharper fields
    # the stiff modes make it first order until h is small: they relax to values slaved to N̂, which ETD1
    # takes from the start of the step.)
    c = smooth_field(32, seed=1, modes=2)
    split = ETDSplit(model, c, p, 1.0, "five-point")
    c_hat = torch.fft.rfft2(c)
    n0 = split.remainder(c, c_hat)
    est, true1, true2 = [], [], []
    for h in (0.1, 0.05, 0.025):
        _, u2, u1 = split.step(c_hat, n0, h)
        exact = rollout(model, c, p, dt=h / 64, n_steps=64, integrator="etdrk2", diagnostics=False).final
        est.append(rms(u2 - u1))
        true1.append(rms(u1 - exact))
        true2.append(rms(u2 - exact))
    assert all(3.2 < est[i] / est[i + 1] < 4.2 for i in range(2)), est  # measured 3.48, 3.53
    assert all(0.8 < e / t < 1.05 for e, t in zip(est, true1)), (est, true1)  # measured 0.86-0.91
    assert all(true2[i] / true2[i + 1] > 3.8 for i in range(2)), true2
    assert all(t < 0.5 * e for e, t in zip(est, true2)), (est, true2)  # measured 0.14-0.21


@pytest.mark.slow
@pytest.mark.parametrize(
    ("mean", "amplitude", "expected_ratio"),
    [(0.3, 0.02, None), (0.5, 0.05, 4.0)],
    ids=["stable", "spinodal"],
)
def test_adaptive_error_against_a_fine_reference(mean, amplitude, expected_ratio):
    # tol bounds the local error of a step. Outside the spinodal (c = 0.3, every mode decays) the global error
    # stays below it; inside (c = 0.5) the growing modes amplify earlier errors (measured: ~8× tol at t = 10),
    # and the global error follows tol: error per step ∝ h² → h ∝ tol^½ → global error of the second-order
    # solution ∝ h² ∝ tol (measured ratio 4.2 for tol / 4).
    model, p = SpinodalModel(), SpinodalParameters()
    c = smooth_field(32, seed=2, mean=mean, amplitude=amplitude)
    ref = rollout(model, c, p, dt=0.004, n_steps=2500, integrator="etdrk2", diagnostics=False).final
    errs, steps = [], []
    for tol in (1e-4, 2.5e-5):
        with torch.no_grad():
            tr = adaptive_spectral(model, c, p, t_end=10.0, tol=tol, norm="rms", diagnostics=False)
        assert tr.times == [0.0, 10.0]
        errs.append(rms(tr.final - ref))
        steps.append(tr.accepted)
    if expected_ratio is None:
        assert max(errs) < 2.5e-5, errs
    else:
        assert 0.75 * expected_ratio < errs[0] / errs[1] < 1.25 * expected_ratio, errs
        assert errs[0] < 10 * 1e-4, errs
        assert 1.6 < steps[1] / steps[0] < 2.5, steps  # steps ∝ tol^-½: ×2 for tol / 4


def test_adaptive_conserves_mass_lowers_free_energy_and_hits_output_times():
    model, p = SpinodalModel(), SpinodalParameters()
    c = pfhub1_initial_condition((64, 64))
    saves = [0.5 * k for k in range(1, 121)]
    with torch.no_grad():
        tr = adaptive_spectral(model, c, p, t_end=60.0, tol=1e-3, norm="relative", save_times=saves)
    assert tr.times == [0.0, *saves]
    total = tr.diagnostics["total_c"][:, 0]
    assert float((total - total[0]).abs().max() / total[0]) < 1e-14
    f = tr.diagnostics["free_energy"][:, 0]
    assert bool((f[1:] <= f[:-1] * (1 + 1e-12)).all())
    assert float(f[-1]) < 0.8 * float(f[0])  # the system did decompose
    assert tr.accepted >= len(saves) and tr.rejected >= 0
    assert tr.states is not None and tr.states.shape == (121, 1, 1, 64, 64)
    assert math.isclose(sum(tr.step_sizes), 60.0, rel_tol=1e-12)


@pytest.mark.parametrize("laplacian", [pytest.param("spectral", marks=pytest.mark.slow), "five-point"])
def test_linear_growth_rate_of_a_single_mode(laplacian):
    # c = c0 + ε cos(k x): ε grows as exp(ω t), ω(k) = −M k² (f''(c0) + κ k²) (k² the symbol of −∇²)
    p = SpinodalParameters()
    n, c0, eps = 32, 0.45, 1e-7
    a, b = p.c_alpha, p.c_beta
    fpp = 2 * p.rho * ((b - c0) ** 2 - 4 * (c0 - a) * (b - c0) + (c0 - a) ** 2)
    for m in (2, 3, 6):  # unstable, near neutral, stable
        k = 2 * math.pi * m / n
        k2 = k * k if laplacian == "spectral" else 4 * math.sin(k / 2) ** 2
        omega = -p.M * k2 * (fpp + p.kappa * k2)
        t_end = min(5.0, 4.0 / abs(omega))  # grow or decay by e⁴ at most (a decayed mode must stay above round-off)
        x = torch.arange(n, dtype=torch.float64)
        c = (c0 + eps * torch.cos(k * x)).view(1, 1, 1, n).expand(1, 1, n, n).contiguous()
        with torch.no_grad():
            tr = adaptive_spectral(
                SpinodalModel(), c, p, t_end=t_end, tol=1e-5, norm="relative", laplacian=laplacian, diagnostics=False
            )
        amp = float(torch.fft.rfft2(tr.final[0, 0])[0, m].abs()) / (n * n / 2)
        measured = math.log(amp / eps) / t_end
        # measured |error| ≤ 8e-5 (m = 6, ω ≈ −11…−15); the two symbols' ω differ by 0.036 at m = 3
        assert abs(measured - omega) < 5e-5 * max(1.0, abs(omega)), (m, measured, omega)


@pytest.mark.slow
def test_generic_models_use_the_rate_and_agree_with_a_fine_reference():
    # Allen-Cahn has no Fourier-space remainder: the default goes through its rate (5-point stencil)
    model, p = AllenCahnModel(), AllenCahnParameters(W=1.0, kappa=2.0, L=1.0)
    eta = smooth_field(32, seed=3, mean=0.9, amplitude=0.05)  # near the well η = 1: no growing mode
    ref = rollout(model, eta, p, dt=0.002, n_steps=1000, integrator="etdrk2", diagnostics=False).final
    with torch.no_grad():
        tr = adaptive_spectral(model, eta, p, t_end=2.0, tol=1e-4, norm="rms")
    assert rms(tr.final - ref) < 1e-4  # measured 1.1e-5
    with pytest.raises(ValueError, match="5-point"):
        adaptive_spectral(model, eta, p, t_end=1.0, laplacian="spectral")


def test_fixed_step_rollout_with_etdrk2_conserves_mass():
    c = pfhub1_initial_condition((32, 32))
    tr = rollout(SpinodalModel(), c, SpinodalParameters(), dt=0.5, n_steps=40, integrator="etdrk2", save_every=10)
    total = tr.diagnostics["total_c"][:, 0]
    assert float((total - total[0]).abs().max()) < 1e-11
    one, _ = etdrk2_spectral(SpinodalModel(), c, SpinodalParameters(), 0.5)
    two = rollout(SpinodalModel(), c, SpinodalParameters(), dt=0.5, n_steps=1, integrator="etdrk2").final
    assert torch.equal(one, two)


def test_bad_input_gives_clear_errors():
    model, p = SpinodalModel(), SpinodalParameters()
    c = pfhub1_initial_condition((16, 16))
    for tol in (0.0, -1e-3, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="tol must be a positive finite number"):
            adaptive_spectral(model, c, p, t_end=1.0, tol=tol)
    bad = c.clone()
    bad[0, 0, 3, 4] = float("nan")
    with pytest.raises(SimulationError, match="NaN/Inf in field c"):
        adaptive_spectral(model, bad, p, t_end=1.0)
    with pytest.raises(ValueError, match="t_start < t_end"):
        adaptive_spectral(model, c, p, t_end=0.0)
    with pytest.raises(ValueError, match="save_times"):
        adaptive_spectral(model, c, p, t_end=1.0, save_times=[2.0])
    with pytest.raises(ValueError, match="norm"):
        adaptive_spectral(model, c, p, t_end=1.0, norm="l1")
    with pytest.raises(ValueError, match="periodic"):
        adaptive_spectral(SpinodalModel(boundary="no-flux"), c, p, t_end=1.0)
    with pytest.raises(ValueError, match="dt must be"):
        etdrk2_spectral(model, c, p, 0.0)
    with pytest.raises(SimulationError, match="dt_min"):
        adaptive_spectral(model, c, p, t_end=10.0, tol=1e-30, dt_min=1e-3, dt0=1.0)


@pytest.mark.slow
def test_the_stabilisation_constant_changes_the_split_not_the_solution():
    # the two splits differ by their O(dt²) errors only: the gap shrinks ×4 when dt halves
    c = smooth_field(32, seed=4)
    p = SpinodalParameters()
    gaps = []
    for dt in (0.02, 0.01):
        a, b = (
            rollout(SpinodalModel(stabilisation=s), c, p, dt=dt, n_steps=round(3 / dt), integrator="etdrk2").final
            for s in (1.0, 0.25)
        )
        gaps.append(rms(a - b))
    assert 3.0 < gaps[0] / gaps[1] < 5.0, gaps
    with pytest.raises(ValueError, match="stabilisation"):
        SpinodalModel(stabilisation=-1.0)


@pytest.mark.slow
def test_pfhub1a_adaptive_free_energy_matches_a_tight_run_to_t100():
    # the benchmark's production settings (tolerance 5e-3, stabilisation 0.25) against tolerance 1e-4
    c = pfhub1_initial_condition()
    p = SpinodalParameters()
    saves = [10.0, 20.0, 50.0, 100.0]
    out = []
    for tol in (5e-3, 1e-4):
        with torch.no_grad():
            tr = adaptive_spectral(
                SpinodalModel(stabilisation=0.25), c, p, t_end=100.0, tol=tol, norm="relative", save_times=saves
            )
        out.append(tr.diagnostics["free_energy"][1:, 0])
        assert tr.diagnostics["free_energy"][0, 0] > tr.diagnostics["free_energy"][-1, 0]
    rel = ((out[0] - out[1]) / out[1]).abs()
    assert float(rel.max()) < 0.02, rel.tolist()
