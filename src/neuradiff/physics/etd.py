"""Exponential time differencing on periodic grids: the split of a model's rate and one ETDRK2 step.

The model's rate is split in Fourier space as φ̂' = −a(k)·φ̂ + N̂(φ), with a(k) the model's linear stabiliser
(Cahn-Hilliard: a = M k²(κk² + S)) and N̂ the remainder
(:meth:`~neuradiff.physics.model.PhaseFieldModel.spectral_remainder`). The linear part is integrated exactly:

- ETD1 (exponential Euler): φ̂₁ = e^{−ah}·φ̂ + h·φ₁(−ah)·N̂(φ), first order;
- ETDRK2 (Cox & Matthews 2002): φ̂₂ = φ̂₁ + h·φ₂(−ah)·(N̂(φ₁) − N̂(φ)), second order,

with φ₁(z) = (eᶻ − 1)/z and φ₂(z) = (eᶻ − 1 − z)/z². φ₂ − φ₁ is the local error of the first-order step
(O(h²)), the error estimate of :func:`~neuradiff.physics.exponential.adaptive_spectral`. A step costs two
evaluations of N̂ and two inverse transforms (four real FFTs for the spinodal model). The fixed step is
:func:`~neuradiff.physics.integrators.etdrk2_spectral`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from neuradiff.physics.model import PhaseFieldModel
from neuradiff.physics.operators import laplacian_symbol
from neuradiff.physics.parameters import ParameterSet

LAPLACIANS = ("five-point", "spectral")


def wavenumber_squared(
    shape: tuple[int, int], dx: float, laplacian: str = "five-point", *, device=None, dtype=torch.float64
) -> Tensor:
    """Symbol of −∇² on an ``rfft2`` grid, shape ``[H, W//2+1]``.

    Parameters
    ----------
    shape : (int, int)
        Grid ``(H, W)``.
    dx : float
        Grid spacing.
    laplacian : {"five-point", "spectral"}
        ``"five-point"``: (4/dx²)[sin²(k_x dx/2) + sin²(k_y dx/2)], the engine's stencil (what
        :meth:`~neuradiff.physics.model.PhaseFieldModel.rate` computes); ``"spectral"``: k_x² + k_y², the exact
        Laplacian of the band-limited interpolant.

    Examples
    --------
    >>> k2 = wavenumber_squared((8, 8), 1.0, "spectral")
    >>> tuple(k2.shape), round(float(k2[0, 4]), 4)  # Nyquist in x: π²
    ((8, 5), 9.8696)
    """
    if laplacian == "five-point":
        return laplacian_symbol(shape, dx, device=device, dtype=dtype)
    if laplacian == "spectral":
        h, w = shape
        ky = 2.0 * math.pi * torch.fft.fftfreq(h, d=dx, device=device, dtype=dtype)
        kx = 2.0 * math.pi * torch.fft.rfftfreq(w, d=dx, device=device, dtype=dtype)
        return ky[:, None] ** 2 + kx[None, :] ** 2
    raise ValueError(f"unknown laplacian {laplacian!r}; choose one of {', '.join(LAPLACIANS)}")


def _series_coefficients(dtype: torch.dtype, device) -> Tensor:
    """[9, 2]: 1/(n+1)! and 1/(n+2)!, the Taylor coefficients of φ₁ and φ₂."""
    return torch.tensor(
        [[1.0 / math.factorial(n + 1), 1.0 / math.factorial(n + 2)] for n in range(9)], dtype=dtype, device=device
    )


def etd_coefficients(a: Tensor, h: float, *, small: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """e^{−ah}, h·φ₁(−ah) and h·φ₂(−ah) for a step of length ``h`` (each shaped like ``a``, ``a ≥ 0``).

    φ₁(z) = (eᶻ − 1)/z and φ₂(z) = (eᶻ − 1 − z)/z² are evaluated by their Taylor series where |z| < 0.1 (no
    cancellation; φ₁(0) = 1, φ₂(0) = ½; relative error ≲ 10⁻¹³ everywhere). ``small``: the indices into
    ``a.reshape(-1)`` of the entries with a·h < 0.1, if the caller knows them (found here otherwise).

    Examples
    --------
    >>> e, p1, p2 = etd_coefficients(torch.tensor([0.0, 1.0], dtype=torch.float64), 0.5)
    >>> [round(float(x), 6) for x in (e[1], p1[0], p2[0], p1[1])]  # e^-0.5, h, h/2, 1 − e^-0.5
    [0.606531, 0.5, 0.25, 0.393469]
    """
    z = (a * (-h)).reshape(-1)
    e = torch.exp(z)
    if small is None:
        small = (z > -0.1).nonzero().squeeze(1)
    zs = z.index_fill(0, small, 1.0)
    phi1 = (e - 1.0).div_(zs)
    phi2 = (phi1 - 1.0).div_(zs)
    if small.numel():
        y = z[small]
        powers = y.unsqueeze(1).pow(torch.arange(9, dtype=y.dtype, device=y.device))  # yⁿ, n ≤ 8
        series = powers @ _series_coefficients(y.dtype, y.device)  # φ₁ = Σ yⁿ/(n+1)!, φ₂ = Σ yⁿ/(n+2)!
        s1, s2 = series[:, 0], series[:, 1]
        phi1[small] = s1
        phi2[small] = s2
    return e.view_as(a), phi1.mul_(h).view_as(a), phi2.mul_(h).view_as(a)


class ETDSplit:
    """The split φ̂' = −a(k)·φ̂ + N̂(φ) of one model on one grid, built once per run: the stabiliser a, the
    remainder N̂, cached ETD coefficients per step length, and one ETDRK2 step with its embedded ETD1 solution."""

    def __init__(self, model: PhaseFieldModel, state: Tensor, params: ParameterSet, dx: float, laplacian: str) -> None:
        if model.boundary != "periodic":
            raise ValueError("exponential integrators need periodic boundaries; use the explicit integrator")
        if not model.supports_spectral:
            raise ValueError(model.spectral_unsupported)
        if laplacian != "five-point" and not model.spectral_remainder_uses_k2:
            raise ValueError(
                f"{model.name} computes its rate with the 5-point stencil; laplacian={laplacian!r} needs a model "
                "whose spectral_remainder uses the symbol it is given"
            )
        self.model, self.params, self.dx = model, params, dx
        self.shape = (state.shape[-2], state.shape[-1])
        self.k2 = wavenumber_squared(self.shape, dx, laplacian, device=state.device, dtype=state.dtype)
        self.a = model.stabiliser(state, params, self.k2).to(state.dtype)
        self.project = type(model).project is not PhaseFieldModel.project
        flat = self.a.reshape(-1)
        self._order = flat.argsort()
        self._a_sorted = flat[self._order].contiguous()
        self.complex = torch.complex128 if state.dtype == torch.float64 else torch.complex64
        self._cache: dict[float, tuple[Tensor, Tensor, Tensor]] = {}

    def coefficients(self, h: float) -> tuple[Tensor, Tensor, Tensor]:
        """The step's ETD coefficients, computed once per step length (the last 32 lengths are kept)."""
        got = self._cache.pop(h, None)  # re-inserted last: the dict is in order of use
        if got is None:
            n_small = int(torch.searchsorted(self._a_sorted, torch.tensor(0.1 / h, dtype=self._a_sorted.dtype)))
            # complex copies: products with the complex spectra then need no promotion on every step
            e, phi1, phi2 = etd_coefficients(self.a, h, small=self._order[:n_small])
            got = (e.to(self.complex), phi1.to(self.complex), phi2.to(self.complex))
            if len(self._cache) >= 32:
                del self._cache[next(iter(self._cache))]
        self._cache[h] = got
        return got

    def remainder(self, state: Tensor, state_hat: Tensor) -> Tensor:
        return self.model.spectral_remainder(state, state_hat, self.params, self.k2, self.a, self.dx)

    def real(self, state_hat: Tensor) -> Tensor:
        return torch.fft.irfft2(state_hat, s=self.shape)

    def step(self, u_hat: Tensor, n0: Tensor, h: float) -> tuple[Tensor, Tensor, Tensor]:
        """(φ̂₂, φ₂, φ₁) of one step of length h from φ̂ with remainder n0."""
        e, p1, p2 = self.coefficients(h)
        u1_hat = torch.addcmul(e * u_hat, p1, n0)
        u1 = self.real(u1_hat)
        n1 = self.remainder(u1, u1_hat)
        u2_hat = torch.addcmul(u1_hat, p2, n1.sub_(n0))  # n1 is not needed after this
        return u2_hat, self.real(u2_hat), u1
