import math

import pytest
import torch

from neuradiff.physics.operators import flux_divergence, forward_differences, laplacian, laplacian_symbol


def _field(h=12, w=10, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand((2, h, w), generator=g, dtype=torch.float64)


@pytest.mark.parametrize("dx", [1.0, 0.5])
def test_laplacian_matches_its_fourier_symbol(dx):
    x = _field()
    k2 = laplacian_symbol(x.shape[-2:], dx)
    spectral = torch.fft.irfft2(-k2 * torch.fft.rfft2(x), s=x.shape[-2:])
    assert torch.allclose(laplacian(x, dx), spectral, atol=1e-12)


def test_laplacian_of_a_quadratic_is_exact_inside():
    y, x = torch.meshgrid(torch.arange(9.0, dtype=torch.float64), torch.arange(9.0, dtype=torch.float64), indexing="ij")
    f = (x * x + 2 * y * y) * 0.25  # ∇² = 0.25·(2 + 4) / dx² with dx = 0.5 in grid units
    lap = laplacian(f, 0.5, boundary="no-flux")
    assert torch.allclose(lap[1:-1, 1:-1], torch.full((7, 7), 6.0, dtype=torch.float64))


@pytest.mark.parametrize("boundary", ["periodic", "no-flux"])
def test_flux_divergence_conserves_and_reduces_to_laplacian(boundary):
    m, mu = _field(seed=2) + 0.1, _field(seed=3)
    div = flux_divergence(m, mu, 0.7, boundary=boundary)
    assert abs(float(div.sum())) < 1e-12
    const = flux_divergence(torch.full_like(mu, 3.0), mu, 0.7, boundary=boundary)
    assert torch.allclose(const, 3.0 * laplacian(mu, 0.7, boundary=boundary), atol=1e-12)


def test_gradient_energy_is_the_adjoint_of_the_laplacian():
    # Σ |D⁺x|² dx²/2 has gradient −∇²x dx²: the identity behind ∂F_h/∂φ = dx² μ.
    for boundary in ("periodic", "no-flux"):
        x = _field().requires_grad_(True)
        gx, gy = forward_differences(x, 0.5, boundary=boundary)
        energy = 0.5 * (gx.pow(2) + gy.pow(2)).sum() * 0.25
        (grad,) = torch.autograd.grad(energy, x)
        assert torch.allclose(grad, -laplacian(x, 0.5, boundary=boundary) * 0.25, atol=1e-12)


def test_unknown_boundary_is_an_error():
    with pytest.raises(ValueError, match="unknown boundary"):
        laplacian(_field(), boundary="wall")


def test_symbol_max_is_eight_over_dx2():
    k2 = laplacian_symbol((8, 8), 1.0)
    assert math.isclose(float(k2.max()), 8.0, rel_tol=1e-12)
