"""A fused CPU kernel for the explicit Euler step of the reference void model (the published code's discretisation),
with a hand-derived adjoint.

The kernel (``kernels/reference_step.c``) computes ``u = s + h·rate(s)`` of
:class:`~neuradiff.physics.void_model.ReferenceVoidModel` (M∇²μ with M = D·c/kBT, logarithms floored at
``log_floor`` and f_s with its derivatives zeroed where s = 1 − c_v − c_i < ``log_floor``) and, for a projected
(sub-)step, ``clamp(u + forcing / forcing_divisor, 0, 1)`` with the counts of the values it clamped, in one sweep over
the rows, each row's chemical potentials computed just before the update that reads them. Its adjoint gives the
gradients with respect to the state, the forcing increment and the nine learned parameters
(:data:`~neuradiff.physics.fused.KERNEL_LEARNED`) in one elementwise and two stencil passes, recomputing the local terms
from the state: the tape of a step is its input state, its three chemical potentials and the clamp mask (one byte per
pixel). The adjoint is that of the plain PyTorch expressions as autograd differentiates them: the clamp passes the
gradient where the value was inside [0, 1] (bounds included), the floored logarithm has zero derivative below the floor
and the mask of f_s none, and the chemical potentials' ``∂f_s/∂c`` is the published code's expression (which is not the
derivative of its f_s where a floor is active), so the η equation's f_s is differentiated as written.

A step's cascades and noise, ``dt·(P·w + noise·ξ)``, are one more pass (:func:`fused_reference_forcing`), without an
adjoint: the increment depends on the state only through the cascade gate, and on no learned parameter. With the
counter-based generator the kernel makes the numbers from the step's key while it writes the increment
(:func:`fused_reference_philox_forcing`): the same increment without making, writing and reading back five fields of
numbers (a step with its backward about 0.2 ms less at 1 × 256² on an Intel Xeon: ``benchmarks/README.md``).

The plain path (:class:`~neuradiff.physics.void_model.ReferenceVoidModel` with ``kernel="torch"``) stays the readable
reference, which the tests compare the kernel with: the same states within float32 round-off (the float32 logarithm is
the conservative kernel's polynomial, :func:`~neuradiff.physics.fused.kernel_log`) and to round-off in float64. It
runs on periodic grids or between no-flux walls, in float32 or float64, on the CPU; it shares the conservative
kernel's build machinery (compiled with ``cc`` on first use into the same cache folder), threads and row loops
(``kernels/common.h``). Where it does not apply (GPU, no compiler, the IMEX step, which the reference discretisation
does not define) the model uses the plain path (:func:`fused_reference_unavailable` says why).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from neuradiff.physics.fused import (
    _DTYPES,
    KERNEL_LEARNED,
    _leaf_grads,
    _library,
    _needs_grad,
    _values,
    forcing_fixed_unavailable,
    forcing_values,
    kernel_unavailable,
)

_KERNEL = "reference_step"


def fused_reference_unavailable(state: Tensor, params: Any, *, boundary: str) -> str | None:
    """Why the fused reference kernel cannot compute a step of ``state`` (``None`` if it can).

    Parameters
    ----------
    state : Tensor
        ``[B, 3, H, W]`` (c_v, c_i, η).
    params : VoidParameters
        Floats or scalar tensors; only the nine learned parameters may require a gradient.
    boundary : {"periodic", "no-flux"}

    Examples
    --------
    >>> import torch
    >>> from neuradiff.physics import VoidParameters
    >>> fused_reference_unavailable(torch.zeros(1, 3, 8, 8, dtype=torch.float16), VoidParameters(), boundary="periodic")
    'the fused kernel needs float32 or float64 (got torch.float16)'
    """
    return kernel_unavailable(state, params, boundary=boundary, kernel=_KERNEL)


def _lib(dtype: torch.dtype) -> Any:
    lib = _library(dtype, _KERNEL)
    assert lib is not None, "call fused_reference_unavailable first"
    return lib


def _forward_call(
    s: Tensor,
    out: Tensor,
    values: Tensor,
    h: float,
    dx: float,
    periodic: bool,
    f: Tensor | None,
    fdiv: int,
    counts: Tensor | None,
    mask: Tensor | None,
    pot: Tensor | None,
) -> None:
    """One forward kernel call ``s → out``; with ``counts`` and ``mask`` the projection follows."""
    b, _, hh, ww = s.shape
    rc = getattr(_lib(s.dtype), f"reference_forward_{_DTYPES[s.dtype]}")(
        s.data_ptr(), out.data_ptr(), b, hh, ww, int(periodic), values.data_ptr(), h, dx,
        None if f is None else f.data_ptr(), float(fdiv),
        None if counts is None else counts.data_ptr(), None if mask is None else mask.data_ptr(),
        None if pot is None else pot.data_ptr(), torch.get_num_threads(),
    )  # fmt: skip
    if rc != 0:
        raise MemoryError("the fused kernel could not allocate its work buffers")


def _backward_call(
    ctx: Any, s: Tensor, ubar: Tensor, mask: Tensor | None, pot: Tensor | None, fbar: Tensor | None, pbar: Tensor
) -> Tensor:
    """One backward kernel call: returns the state's adjoint; adds the forcing's adjoint to ``fbar`` (if given) and the
    nine parameter sums (float64) to ``pbar``."""
    sbar = torch.empty_like(s)
    b, _, hh, ww = s.shape
    rc = getattr(_lib(s.dtype), f"reference_backward_{_DTYPES[s.dtype]}")(
        s.data_ptr(), ubar.data_ptr(), sbar.data_ptr(), None if fbar is None else fbar.data_ptr(), pbar.data_ptr(),
        b, hh, ww, int(ctx.periodic), ctx.values.data_ptr(), ctx.h, ctx.dx, float(ctx.fdiv),
        None if mask is None else mask.data_ptr(), None if pot is None else pot.data_ptr(), torch.get_num_threads(),
    )  # fmt: skip
    if rc != 0:
        raise MemoryError("the fused kernel could not allocate its work buffers")
    return sbar


def _remember(ctx: Any, values: Tensor, h: float, dx: float, fdiv: int, periodic: bool, leaves) -> None:
    ctx.values, ctx.h, ctx.dx, ctx.fdiv, ctx.periodic = values, h, dx, fdiv, periodic
    ctx.leaf_meta = [(leaf.dtype, leaf.shape) if isinstance(leaf, Tensor) else None for leaf in leaves]


def _forcing_adjoint(ctx: Any, state: Tensor) -> Tensor | None:
    """A zeroed buffer for the forcing's adjoint if the forcing needs its gradient, else ``None``."""
    return torch.zeros_like(state) if ctx.needs_input_grad[1] else None


def _step_forward(
    state: Tensor, forcing: Tensor | None, values: Tensor, h, dx, fdiv, project: bool, periodic: bool, grad: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None]:
    """One step's kernel call: (input state, output, counts, clamp mask, potentials); the potentials (the tape besides
    the state and the mask) only with ``grad``."""
    s = state.detach().contiguous()
    out = torch.empty_like(s)
    b, _, hh, ww = s.shape
    f = None if forcing is None else forcing.detach().to(s.dtype).contiguous()
    counts = torch.zeros((b, 3), dtype=torch.int64)
    mask = torch.empty((b, hh, ww), dtype=torch.uint8) if project else None
    pot = torch.empty((b, 3, hh, ww), dtype=s.dtype) if grad else None
    _forward_call(s, out, values, h, dx, periodic, f, fdiv, counts if project else None, mask, pot)
    return s, out, counts, mask, pot


class _ReferenceStep(torch.autograd.Function):
    @staticmethod
    def forward(ctx, state, forcing, values, h, dx, fdiv, project, periodic, *leaves):
        grad = any(ctx.needs_input_grad)
        s, out, counts, mask, pot = _step_forward(state, forcing, values, h, dx, fdiv, project, periodic, grad)
        ctx.save_for_backward(s, mask, pot)
        _remember(ctx, values, h, dx, fdiv, periodic, leaves)
        ctx.mark_non_differentiable(counts)
        return out, counts

    @staticmethod
    def backward(ctx, *grads):
        s, mask, pot = ctx.saved_tensors
        fbar = _forcing_adjoint(ctx, s)
        pbar = torch.zeros(len(KERNEL_LEARNED), dtype=torch.float64)
        sbar = _backward_call(ctx, s, grads[0].contiguous(), mask, pot, fbar, pbar)
        return (sbar, fbar, None, None, None, None, None, None, *_leaf_grads(ctx, pbar))


def fused_reference_step(
    state: Tensor,
    params: Any,
    h: float,
    dx: float,
    *,
    log_floor: float,
    forcing: Tensor | None = None,
    forcing_divisor: int = 1,
    project: bool = False,
    boundary: str = "periodic",
) -> tuple[Tensor, Tensor]:
    """One explicit Euler (sub-)step of the reference void model and the out-of-bounds counts.

    Parameters
    ----------
    state : Tensor
        ``[B, 3, H, W]`` (c_v, c_i, η; site fractions), float32 or float64, on the CPU.
    params : VoidParameters
        The nine learned parameters may be scalar tensors that require a gradient.
    h : float
        Step length (simulation time units).
    dx : float
        Grid spacing (simulation length units).
    log_floor : float
        ε of the floored logarithms and of the mask of f_s (the model's ``log_floor``).
    forcing : Tensor, optional
        ``[B, 3, H, W]``: the step's source and noise increment, added (divided by ``forcing_divisor``) before the
        projection; only with ``project``.
    forcing_divisor : int
        The number of sub-steps that share ``forcing``.
    project : bool
        Clamp every field of ``u + forcing / forcing_divisor`` to [0, 1]
        (:meth:`~neuradiff.physics.void_model.ReferenceVoidModel.project`).
    boundary : {"periodic", "no-flux"}

    Returns
    -------
    state : Tensor
        ``u = state + h·rate(state)``, projected with ``project``; ``[B, 3, H, W]``.
    counts : Tensor
        ``[B, 3]`` int64: the values outside [0, 1] before the projection, per field (zero without ``project``).

    Differentiable with respect to ``state``, ``forcing`` and the nine learned parameters. Call
    :func:`fused_reference_unavailable` first; the caller falls back to the plain path when it gives a reason.

    Examples
    --------
    >>> from neuradiff.physics import VoidModel, VoidParameters, single_void
    >>> s, p = single_void((16, 16), 4.0, dtype=torch.float64), VoidParameters()
    >>> fused, counts = fused_reference_step(s, p, 0.01, 1.0, log_floor=1e-6, project=True)
    >>> plain, plain_counts = VoidModel("reference").euler_substep(s, p, 0.01, 1.0)
    >>> bool((fused - plain).abs().max() < 1e-12), bool((counts == plain_counts).all())
    (True, True)
    """
    if forcing is not None and not project:
        raise ValueError("a forcing increment is added by the projected step only (project=True)")
    values = _values(params, log_floor, 0.0)
    leaves = [getattr(params, k) for k in KERNEL_LEARNED]
    args = (state, forcing, values, float(h), float(dx), int(forcing_divisor), bool(project), boundary == "periodic")
    if not _needs_grad(state, forcing, *leaves):  # nothing to record: the kernel call without autograd's work
        _, out, counts, _, _ = _step_forward(*args, False)
    else:
        out, counts = _ReferenceStep.apply(*args, *leaves)
    return out, counts


def _substeps_forward(
    state: Tensor, forcing: Tensor | None, values: Tensor, h, dx, fdiv, periodic: bool, count: int, grad: bool
) -> tuple[Tensor, Tensor, list[Tensor]]:
    """``count`` projected sub-steps: (state, summed counts, tape); the tape (each sub-step's input state, potentials
    and clamp mask) only with ``grad``."""
    s = state.detach().contiguous()
    b, _, hh, ww = s.shape
    f = None if forcing is None else forcing.detach().to(s.dtype).contiguous()
    counts = torch.zeros((b, 3), dtype=torch.int64)
    step_counts = counts if count == 1 else torch.zeros((b, 3), dtype=torch.int64)
    mask = None if grad else torch.empty((b, hh, ww), dtype=torch.uint8)
    tape: list[Tensor] = []
    for _ in range(count):
        out = torch.empty_like(s)
        pot = torch.empty((b, 3, hh, ww), dtype=s.dtype) if grad else None
        m = torch.empty((b, hh, ww), dtype=torch.uint8) if mask is None else mask
        _forward_call(s, out, values, h, dx, periodic, f, fdiv, step_counts, m, pot)
        if count > 1:
            counts += step_counts
        if grad:
            assert pot is not None
            tape += [s, pot, m]
        s = out
    return s, counts, tape


class _ReferenceSubsteps(torch.autograd.Function):
    """``count`` projected sub-steps in one autograd node: the same kernel calls and tape as ``count``
    :class:`_ReferenceStep` calls, without autograd's per-call work."""

    @staticmethod
    def forward(ctx, state, forcing, values, h, dx, fdiv, periodic, count, *leaves):
        grad = any(ctx.needs_input_grad)
        s, counts, tape = _substeps_forward(state, forcing, values, h, dx, fdiv, periodic, count, grad)
        ctx.save_for_backward(*tape)
        _remember(ctx, values, h, dx, fdiv, periodic, leaves)
        ctx.mark_non_differentiable(counts)
        return s, counts

    @staticmethod
    def backward(ctx, *grads):
        tape = ctx.saved_tensors
        ubar = grads[0].contiguous()
        fbar = _forcing_adjoint(ctx, ubar)
        pbar = torch.zeros(len(KERNEL_LEARNED), dtype=torch.float64)
        for k in range(len(tape) // 3 - 1, -1, -1):
            s, pot, mask = tape[3 * k : 3 * k + 3]
            ubar = _backward_call(ctx, s, ubar, mask, pot, fbar, pbar)
        return (ubar, fbar, None, None, None, None, None, None, *_leaf_grads(ctx, pbar))


def fused_reference_substeps(
    state: Tensor,
    params: Any,
    h: float,
    dx: float,
    count: int,
    *,
    log_floor: float,
    forcing: Tensor | None = None,
    forcing_divisor: int = 1,
    boundary: str = "periodic",
) -> tuple[Tensor, Tensor]:
    """``count`` projected sub-steps of :func:`fused_reference_step` (the same ``forcing`` each) in one call.

    The same arithmetic and gradients as ``count`` :func:`fused_reference_step` calls with ``project=True``, with the
    per-call work of autograd done once. The tape holds every sub-step's input state, potentials and clamp mask; the
    integrators bound it by recomputing groups of sub-steps (``checkpoint_substeps``), as for the conservative kernel.

    Parameters
    ----------
    state : Tensor
        ``[B, 3, H, W]`` (c_v, c_i, η).
    params : VoidParameters
    h : float
        The sub-step length (simulation time units).
    dx : float
        Grid spacing (simulation length units).
    count : int
        Number of sub-steps (≥ 1).
    log_floor, forcing, forcing_divisor, boundary
        As in :func:`fused_reference_step`.

    Returns
    -------
    state : Tensor
        ``[B, 3, H, W]`` after the sub-steps.
    counts : Tensor
        ``[B, 3]`` int64: the out-of-bounds counts summed over the sub-steps.

    Examples
    --------
    A model with ``kernel="fused"`` calls it for the sub-steps of a split step:

    >>> from neuradiff.physics import VoidModel, VoidParameters, single_void
    >>> model = VoidModel("reference", kernel="fused")
    >>> out, counts = model.euler_substeps(single_void((16, 16), 4.0), VoidParameters(), 0.01, 1.0, 3)
    >>> tuple(out.shape), tuple(counts.shape)
    ((1, 3, 16, 16), (1, 3))
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    values = _values(params, log_floor, 0.0)
    leaves = [getattr(params, k) for k in KERNEL_LEARNED]
    args = (state, forcing, values, float(h), float(dx), int(forcing_divisor), boundary == "periodic")
    if not _needs_grad(state, forcing, *leaves):  # nothing to record: the kernel calls without autograd's work
        out, counts, _ = _substeps_forward(*args, int(count), False)
    else:
        out, counts = _ReferenceSubsteps.apply(*args, int(count), *leaves)
    return out, counts


def fused_reference_stability(state: Tensor, params: Any, dx: float, *, log_floor: float) -> tuple[float, float, float]:
    """The maxima over the pixels of ``state`` (``[B, 3, H, W]``) that the explicit stability estimate of
    :class:`~neuradiff.physics.void_model.ReferenceVoidModel` takes, in one pass.

    Returns ``(t_v, t_i, t_η)``: the c_v and c_i stiffness ``D·hh + 2·j·M + M·κ·k`` (M = D·c/kBT, ``k = 8/dx²``; the
    rate is ``k·t``) and ``|∂²f/∂η²| = |2 (f_s + f_v)|`` (energy per site). NaN anywhere gives NaN. Call
    :func:`fused_reference_unavailable` first.

    Examples
    --------
    >>> from neuradiff.physics import VoidModel, VoidParameters, single_void
    >>> s, p = single_void((16, 16), 4.0), VoidParameters()
    >>> fused = float(VoidModel("reference", kernel="fused").stability_rate(s, p, 1.0))
    >>> plain = float(VoidModel("reference").stability_rate(s, p, 1.0))
    >>> abs(fused - plain) <= 1e-5 * plain
    True
    """
    s = state.detach().contiguous()
    values = _values(params, log_floor, 0.0)
    out = torch.zeros(3, dtype=torch.float64)
    b, _, hh, ww = s.shape
    getattr(_lib(s.dtype), f"reference_stability_{_DTYPES[s.dtype]}")(
        s.data_ptr(), b, hh, ww, values.data_ptr(), float(dx), out.data_ptr()
    )
    tv, ti, te = out.tolist()
    return tv, ti, te


def fused_reference_forcing_unavailable(state: Tensor, params: Any, draws: dict[str, Tensor]) -> str | None:
    """Why :func:`fused_reference_forcing` cannot compute this increment (``None`` if it can); call after
    :func:`fused_reference_unavailable` said the step can run."""
    reason = forcing_fixed_unavailable(params)
    if reason is not None:
        return reason
    b, _, h, w = state.shape
    shapes = {"gate": (b, h, w), "amplitude": (b, h, w), "xi": (b, 3, h, w)}
    for name, shape in shapes.items():
        d = draws.get(name)
        if d is None or tuple(d.shape) != shape or d.device != state.device:
            return "the draws are not those of the reference model"
    return None


def fused_reference_forcing(
    state: Tensor, params: Any, draws: dict[str, Tensor], dt: float, *, eta_max: float
) -> Tensor:
    """The stochastic increment of one step of the reference void model, ``[B, 3, H, W]``, from its draws (``gate``,
    ``amplitude`` ``[B, H, W]``, ``xi`` ``[B, 3, H, W]``), in one pass: ``dt·(P·w + noise·ξ)`` with the cascade source
    ``P = V_g·U`` where η < ``eta_max`` and the gate ≤ p_casc, shared by ``w = (bias, 1 − bias, 2·bias − 1)``, as
    :meth:`~neuradiff.physics.void_model.VoidModel.forcing_increment` computes it in PyTorch operations. It needs no
    gradient: it depends on the state only through the cascade gate, a step, and on no learned parameter. Call
    :func:`fused_reference_unavailable` and :func:`fused_reference_forcing_unavailable` first.

    Examples
    --------
    A model with ``kernel="fused"`` takes a stochastic step's increment from it:

    >>> import torch
    >>> from neuradiff.physics import VoidModel, VoidParameters, single_void
    >>> s, p = single_void((16, 16), 4.0), VoidParameters()
    >>> fused, plain = VoidModel("reference", kernel="fused"), VoidModel("reference")
    >>> draws = fused.draw(torch.Generator().manual_seed(0), tuple(s.shape), s.dtype)
    >>> a = fused.forcing_increment(s, p, draws, 0.1, 1.0)
    >>> bool(torch.allclose(a, plain.forcing_increment(s, p, draws, 0.1, 1.0), rtol=1e-6, atol=1e-7))
    True
    """
    s = state.detach().contiguous()
    g, a, x = (draws[k].detach().to(s.dtype).contiguous() for k in ("gate", "amplitude", "xi"))
    extra = forcing_values(params, dt, eta_max)
    out = torch.empty_like(s)
    b, _, hh, ww = s.shape
    getattr(_lib(s.dtype), f"reference_forcing_{_DTYPES[s.dtype]}")(
        s.data_ptr(), g.data_ptr(), a.data_ptr(), x.data_ptr(), out.data_ptr(), b, hh, ww, extra.data_ptr()
    )
    return out


def fused_reference_philox_forcing(
    state: Tensor, params: Any, key: int, dt: float, *, eta_max: float, field: int = 0
) -> Tensor:
    """:func:`fused_reference_forcing` with the draws made from their Philox key in the kernel: the gate, the amplitude
    and ξ are fields ``field``, ``field + 1`` and ``field + 2`` of ``key``
    (:class:`~neuradiff.physics.random_numbers.PhiloxNumbers`, in the order
    :meth:`~neuradiff.physics.void_model.VoidModel.draw` asks for them), but no field of numbers is made: the cascade
    source of each pixel from the gate's and the amplitude's words, then each number of ξ written into its element of
    the increment. The same increment as :func:`fused_reference_forcing` of those fields, to the bit (float32 and
    float64), in two thirds of the time the fields and that pass take (0.24 against 0.35–0.38 ms at 1 × 256² on an
    Intel Xeon, one thread). Call :func:`fused_reference_unavailable` first; the learned parameters are not read,
    :data:`~neuradiff.physics.fused.FORCING_FIXED` must need no gradient.

    Parameters
    ----------
    state : Tensor
        ``[B, 3, H, W]`` (c_v, c_i, η), float32 or float64, on the CPU.
    params : VoidParameters
    key : int
        The 64-bit Philox key of the step's numbers.
    dt : float
        Step length (simulation time units).
    eta_max : float
        Cascades only where η < ``eta_max``.
    field : int
        The first of the key's three fields.

    Returns
    -------
    Tensor
        ``[B, 3, H, W]``: ``dt·(P·w + noise·ξ)``.

    Examples
    --------
    >>> from neuradiff.physics import VoidModel, VoidParameters, single_void
    >>> from neuradiff.physics.random_numbers import PhiloxNumbers
    >>> s, p = single_void((16, 16), 4.0), VoidParameters()
    >>> draws = VoidModel("reference").draw(PhiloxNumbers(5), tuple(s.shape), s.dtype)
    >>> a = fused_reference_philox_forcing(s, p, 5, 0.1, eta_max=0.8)
    >>> bool(torch.equal(a, fused_reference_forcing(s, p, draws, 0.1, eta_max=0.8)))
    True
    """
    s = state.detach().contiguous()
    extra = forcing_values(params, dt, eta_max)
    out = torch.empty_like(s)
    b, _, hh, ww = s.shape
    rc = getattr(_lib(s.dtype), f"reference_forcing_philox_{_DTYPES[s.dtype]}")(
        s.data_ptr(), out.data_ptr(), b, hh, ww, extra.data_ptr(),
        int(key) & 0xFFFFFFFF, (int(key) >> 32) & 0xFFFFFFFF, int(field) & 0xFFFFFFFF, torch.get_num_threads(),
    )  # fmt: skip
    if rc != 0:
        raise MemoryError("the fused kernel could not allocate its work buffers")
    return out
