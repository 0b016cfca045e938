"""A fused CPU kernel for the explicit and IMEX Euler increment of the conservative void model, with a
hand-derived adjoint.

The kernel (``kernels/void_step.c``) computes ``u = s + h·rate(s) / (1 + h·d(s))`` (``d = 0`` for the explicit
step) in one sweep over the rows, each row's chemical potentials computed just before the update that reads
them. Its adjoint (the gradients with respect to the state and the nine learned parameters) takes one more
sweep of two row passes and an elementwise one before it, recomputing what it needs from the state and the
chemical potentials instead of storing intermediates: the tape of a step is its input state and four potential
fields (μ_v, μ_i, μ_η and the implicit diagonal of η), seven fields in all. The parameter gradients are summed
row by row inside the vectorised loops, the rows in double. Every pixel loop is branch-free, so the compiler
vectorises it.
It is the same arithmetic as the plain PyTorch path of
:class:`~neuradiff.physics.void_model.ConservativeVoidModel` (the readable reference, which the tests compare
it with), on periodic grids or between no-flux walls, with upwind face mobilities, in float32 or float64. The
stability guard's estimate of a state (:func:`fused_stability`) is one more pass. In
float32 the logarithm is a branch-free polynomial (Cephes' range reduction, a degree-6 polynomial for the
mantissa) instead of libm's, so the pixel loops vectorise: over every float in [1e-6, 4) it is within 1.16 ulp of
the exact result where |ln x| > 1e-3 (1.03e-7 relative, 5.1e-7 absolute at most; :func:`kernel_log` exposes it
for checking).

The kernel uses torch's intra-op thread count (``torch.set_num_threads``): a call shares its batch elements
between the threads, or the rows of a single field (OpenMP; on Linux the runtime torch itself loaded); every
thread count gives bit-identical results, since the parameter gradients are summed per row and the rows added in
order.

It is compiled with the machine's C compiler (``cc``, or ``$CC``) on first use into a cache folder
(``$NEURADIFF_KERNEL_CACHE``, else ``$XDG_CACHE_HOME/neuradiff/kernels`` or ``~/.cache/neuradiff/kernels``);
nothing is built at install time. Without a compiler, on a non-CPU device, or for a configuration the kernel
does not cover, the model uses the plain PyTorch path (:func:`fused_unavailable` says why).

The reference discretisation's explicit step has its own kernel (``kernels/reference_step.c``, wrapped by
:mod:`neuradiff.physics.fused_reference`), built and cached by the same machinery; both sources include
``kernels/common.h`` (the row loops of the stencils, the float32 logarithm, how a call spreads over threads).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from neuradiff.core.allocator import configure_allocator

#: The parameters the kernel differentiates, in its order.
KERNEL_LEARNED = ("E_v", "E_i", "kBT", "kappa_v", "kappa_i", "kappa_eta", "D_v", "D_i", "L")
#: Parameters the kernel reads but does not differentiate.
KERNEL_FIXED = ("R_bulk", "R_surf")

_DTYPES = {torch.float32: "f32", torch.float64: "f64"}
_LIBS: dict[tuple[str, str], Any] = {}
_FAILED: dict[str, str] = {}


def _cache_dir() -> Path:
    env = os.environ.get("NEURADIFF_KERNEL_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "neuradiff" / "kernels"


def _cpu_signature() -> str:
    """The CPU the library is built for (it is compiled for this machine's vector instructions)."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = [ln for ln in f if ln.startswith(("model name", "flags", "Features"))]
        return hashlib.sha256("".join(sorted(set(lines))).encode()).hexdigest()[:12]
    except OSError:
        return platform.machine() + platform.processor()


def _compiler() -> str | None:
    for cand in (os.environ.get("CC"), sysconfig.get_config_var("CC"), "cc", "gcc", "clang"):
        if cand:
            exe = shutil.which(cand.split()[0])
            if exe:
                return exe
    return None


#: The entry points of each kernel source (``kernels/<name>.c``) and their ctypes argument types, by suffix-less
#: name; every one returns an int (0, or 1 when a work buffer could not be allocated).
_P, _I, _D, _U, _L = ctypes.c_void_p, ctypes.c_int, ctypes.c_double, ctypes.c_uint32, ctypes.c_int64
_ENTRY_POINTS: dict[str, dict[str, list[Any]]] = {
    "void_step": {
        "void_forward": [_P, _P, _I, _I, _I, _I, _P, _D, _D, _I, _P, _D, _P, _P, _P, _I],
        "void_forward_substeps": [_P, _P, _P, _I, _I, _I, _I, _I, _P, _D, _D, _I, _P, _D, _P, _P, _I],
        "void_backward": [_P, _P, _P, _P, _I, _I, _I, _I, _P, _D, _D, _I, _P, _P, _I],
        "void_stability": [_P, _I, _I, _I, _P, _D, _I, _P],
        "void_forcing": [_P, _P, _P, _P, _P, _I, _I, _I, _P, _P, _D, _I],
        "void_forcing_backward": [_P, _P, _P, _P, _P, _I, _I, _I, _P, _P, _D, _I],
    },
    "reference_step": {
        "reference_forward": [_P, _P, _I, _I, _I, _I, _P, _D, _D, _P, _D, _P, _P, _P, _I],
        "reference_backward": [_P, _P, _P, _P, _P, _I, _I, _I, _I, _P, _D, _D, _D, _P, _P, _I],
        "reference_stability": [_P, _I, _I, _I, _P, _D, _P],
        "reference_forcing": [_P, _P, _P, _P, _P, _I, _I, _I, _P],
        "reference_forcing_philox": [_P, _P, _I, _I, _I, _P, _U, _U, _U, _I],
    },
    "philox": {
        "philox_uniform": [_U, _U, _U, _L, _P, _I],
        "philox_normal": [_U, _U, _U, _L, _P, _I],
    },
}
#: Headers the kernel sources include (copied beside them when compiling).
_HEADERS = ("common.h", "philox.h")
#: Flags for this machine's vector units and OpenMP threads, tried in turn until the compiler takes one set. On x86
#: the first asks for the full width of AVX-512 where the CPU has it (compilers default to 256-bit vectors there: on
#: an Intel Xeon a 256² step forward took 330 µs with them against 270 µs at 512 bits); other targets refuse that flag.
_MACHINE_FLAGS = (
    ("-march=native", "-mprefer-vector-width=512", "-fopenmp"),
    ("-march=native", "-fopenmp"),
    ("-fopenmp",),
    ("-march=native",),
    (),
)


def _build(kernel: str, suffix: str, defines: tuple[str, ...] = ()) -> Any:
    """Compile ``kernels/<kernel>.c`` for one precision (``suffix``: ``"f32"`` or ``"f64"``) into the cache folder, if
    it is not there yet, and load it with the argument types of its entry points. ``defines``: further ``-D`` flags
    (the tests build the other code paths of a source with them, e.g. ``("-DPHILOX_PLAIN",)``)."""
    kernels = resources.files("neuradiff.physics").joinpath("kernels")
    source = kernels.joinpath(f"{kernel}.c").read_text()
    headers = {name: kernels.joinpath(name).read_text() for name in _HEADERS}
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler found (set CC or install gcc/clang)")
    real = "float" if suffix == "f32" else "double"
    # -fno-trapping-math and the simd pragma let the compiler vectorise the selects of the pixel loops; the
    # results do not depend on them (only floating-point exception flags do).
    flags = ["-O3", "-shared", "-fPIC", "-fno-math-errno", "-fno-trapping-math", "-fopenmp-simd"]
    flags += [f"-DREAL={real}", f"-DSUFFIX=_{suffix}"] + (["-DFAST_LOG"] if suffix == "f32" else []) + list(defines)
    texts = [source, *headers.values()]
    parts = [*texts, cc, *flags, repr(_MACHINE_FLAGS), sys.platform, _cpu_signature()]
    key = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]
    out = _cache_dir() / f"{kernel}_{suffix}_{key}.so"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / f"{kernel}.c"
            src.write_text(source)
            for name, text in headers.items():
                (Path(tmp) / name).write_text(text)
            lib = Path(tmp) / out.name
            proc = None
            for extra in _MACHINE_FLAGS:
                proc = subprocess.run(
                    [cc, *flags, *extra, str(src), "-o", str(lib), "-lm"], capture_output=True, text=True
                )
                if proc.returncode == 0:
                    break
            assert proc is not None
            if proc.returncode != 0:
                raise RuntimeError(f"compiling the fused kernel failed: {proc.stderr.strip()[:500]}")
            staged = out.with_name(out.name + f".{os.getpid()}.tmp")
            shutil.copyfile(lib, staged)
            os.replace(staged, out)  # atomic: concurrent builds never see a half-written library
    dll = ctypes.CDLL(str(out))
    for name, argtypes in _ENTRY_POINTS[kernel].items():
        fn = getattr(dll, f"{name}_{suffix}")
        fn.argtypes = argtypes
        fn.restype = ctypes.c_int
    return dll


def _library(dtype: torch.dtype, kernel: str = "void_step") -> Any | None:
    """The compiled ``kernel`` (a source in ``kernels/``) for ``dtype``, built on first use; ``None`` (with a warning,
    once) if it cannot be built."""
    suffix = _DTYPES[dtype]
    if (kernel, suffix) in _LIBS:
        return _LIBS[kernel, suffix]
    if kernel in _FAILED:
        return None
    # a step's output is a fresh field-sized buffer: reuse it from the heap instead of faulting it in each call
    configure_allocator()
    try:
        _LIBS[kernel, suffix] = _build(kernel, suffix)
    except (OSError, RuntimeError) as exc:
        _FAILED[kernel] = str(exc)
        warnings.warn(
            f"the compiled kernel {kernel!r} is not available ({exc}); using the plain PyTorch path", stacklevel=3
        )
        return None
    return _LIBS[kernel, suffix]


def build_kernels(dtypes: tuple[torch.dtype, ...] = (torch.float32, torch.float64)) -> dict[tuple[str, str], bool]:
    """Build every compiled kernel for ``dtypes`` that is not built yet, one compiler per core at a time (a first
    run on a machine otherwise compiles them one after the other as they are first used: about 10 s on two cores
    for all of them). Returns whether each (kernel, ``"f32"``/``"f64"``) can be used. Optional: every kernel is
    built on first use anyway.

    Examples
    --------
    >>> import torch
    >>> built = build_kernels((torch.float32,))
    >>> sorted(built) == [("philox", "f32"), ("reference_step", "f32"), ("void_step", "f32")]
    True
    """
    configure_allocator()
    jobs = [(kernel, dtype) for kernel in _ENTRY_POINTS for dtype in dtypes]
    with ThreadPoolExecutor(max_workers=max(1, min(len(jobs), os.cpu_count() or 1))) as pool:
        found = list(pool.map(lambda job: _library(job[1], job[0]) is not None, jobs))
    return {(kernel, _DTYPES[dtype]): ok for (kernel, dtype), ok in zip(jobs, found)}


def _build_failure(kernel: str = "void_step") -> str:
    """Why ``kernel`` could not be built (after :func:`_library` returned ``None``)."""
    return _FAILED.get(kernel, "unknown reason")


def kernel_unavailable(state: Tensor, params: Any, *, boundary: str, kernel: str = "void_step") -> str | None:
    """Why the compiled ``kernel`` (a source in ``kernels/``) cannot compute a step of ``state`` with ``params``
    (``None`` if it can): the checks every fused kernel shares (boundary, device, dtype, scalar parameters, no
    gradient for the fixed ones, a build)."""
    if boundary not in ("periodic", "no-flux"):
        return f"unknown boundary {boundary!r}"
    if state.device.type != "cpu":
        return f"the fused kernel runs on the CPU (state on {state.device.type})"
    if state.dtype not in _DTYPES:
        return f"the fused kernel needs float32 or float64 (got {state.dtype})"
    for name in (*KERNEL_LEARNED, *KERNEL_FIXED):
        v = getattr(params, name)
        if isinstance(v, Tensor):
            if v.numel() != 1:
                return f"parameter {name} is not a scalar"
            if v.requires_grad and name in KERNEL_FIXED:
                return f"the fused kernel does not differentiate {name}"
    if _library(state.dtype, kernel) is None:
        return f"the kernel could not be built: {_build_failure(kernel)}"
    return None


def fused_unavailable(state: Tensor, params: Any, *, boundary: str, face: str) -> str | None:
    """Why the fused kernel cannot compute this step (``None`` if it can).

    Examples
    --------
    >>> import torch
    >>> from neuradiff.physics import VoidParameters
    >>> fused_unavailable(torch.zeros(1, 3, 8, 8), VoidParameters(), boundary="periodic", face="mean")
    'the fused kernel is written for upwind face mobilities'
    """
    if face != "upwind" and boundary in ("periodic", "no-flux"):
        return "the fused kernel is written for upwind face mobilities"
    return kernel_unavailable(state, params, boundary=boundary)


def scalar(v: Any) -> float:
    """A parameter's value as a float (of a one-element tensor, its value; no gradient is recorded)."""
    return float(v.item()) if isinstance(v, Tensor) else float(v)


def kernel_log(x: Tensor) -> Tensor:
    """The float32 kernel's logarithm of every element of ``x`` (float32, positive), to check its stated accuracy.

    Examples
    --------
    >>> import torch
    >>> from neuradiff.physics.fused import kernel_log
    >>> kernel_log(torch.tensor([1.0, 4.0]))
    tensor([0.0000, 1.3863])
    """
    lib = _library(torch.float32)
    if lib is None:
        raise RuntimeError(f"the fused kernel could not be built: {_build_failure()}")
    x = x.detach().to(torch.float32).contiguous()
    out = torch.empty_like(x)
    fn = lib.fast_log_array
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_longlong]
    fn.restype = None
    fn(x.data_ptr(), out.data_ptr(), x.numel())
    return out


def _values(params: Any, log_floor: float, saturation_floor: float) -> Tensor:
    vals = [scalar(getattr(params, k)) for k in (*KERNEL_LEARNED, *KERNEL_FIXED)]
    return torch.tensor([*vals, log_floor, saturation_floor], dtype=torch.float64)


def _forward_call(
    lib: Any,
    s: Tensor,
    out: Tensor,
    values: Tensor,
    h: float,
    dx: float,
    imex: bool,
    periodic: bool,
    f: Tensor | None,
    fdiv: float,
    counts: Tensor | None,
    mask: Tensor | None,
    pot: Tensor | None,
) -> None:
    """One forward kernel call ``s → out``; with ``counts`` (and ``mask``) the projection follows."""
    b, _, hh, ww = s.shape
    rc = getattr(lib, f"void_forward_{_DTYPES[s.dtype]}")(
        s.data_ptr(),
        out.data_ptr(),
        b,
        hh,
        ww,
        int(periodic),
        values.data_ptr(),
        h,
        dx,
        int(imex),
        None if f is None else f.data_ptr(),
        float(fdiv),
        None if counts is None else counts.data_ptr(),
        None if mask is None else mask.data_ptr(),
        None if pot is None else pot.data_ptr(),
        torch.get_num_threads(),
    )
    if rc != 0:
        raise MemoryError("the fused kernel could not allocate its work buffers")


def _backward_call(ctx: Any, s: Tensor, ubar: Tensor, mask: Tensor | None, pot: Tensor | None) -> tuple[Tensor, Tensor]:
    """One backward kernel call: the adjoint of the state and the nine parameter sums (float64) of one step."""
    lib = _library(s.dtype)
    assert lib is not None
    sbar = torch.empty_like(s)
    pbar = torch.zeros(len(KERNEL_LEARNED), dtype=torch.float64)
    b, _, hh, ww = s.shape
    rc = getattr(lib, f"void_backward_{_DTYPES[s.dtype]}")(
        s.data_ptr(),
        ubar.data_ptr(),
        sbar.data_ptr(),
        pbar.data_ptr(),
        b,
        hh,
        ww,
        int(ctx.periodic),
        ctx.values.data_ptr(),
        ctx.h,
        ctx.dx,
        int(ctx.imex),
        None if mask is None else mask.data_ptr(),
        None if pot is None else pot.data_ptr(),
        torch.get_num_threads(),
    )
    if rc != 0:
        raise MemoryError("the fused kernel could not allocate its work buffers")
    return sbar, pbar


def _remember(ctx: Any, values, h, dx, imex, fdiv, periodic, forcing, leaves) -> None:
    ctx.values, ctx.h, ctx.dx, ctx.imex, ctx.fdiv, ctx.periodic = values, h, dx, imex, fdiv, periodic
    ctx.has_forcing = forcing is not None
    ctx.leaf_meta = [(leaf.dtype, leaf.shape) if isinstance(leaf, Tensor) else None for leaf in leaves]


def _clamp_adjoint(ctx: Any, ubar: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """(the adjoint the kernel takes, the clamp mask left for the kernel to apply, the forcing's adjoint or None).

    The clamp of eta passes the gradient where eta was inside [0, 1]. When the forcing needs its gradient the
    mask is applied here (the forcing's adjoint is the masked one divided by the sub-step count), else inside
    the kernel."""
    if not (ctx.has_forcing and ctx.needs_input_grad[1]):
        return ubar, mask, None
    if mask is not None:
        ubar = ubar.clone()
        ubar[:, 2] *= mask.to(ubar.dtype)
    return ubar, None, ubar if ctx.fdiv == 1 else ubar / ctx.fdiv


def _leaf_grads(ctx: Any, pbar: Tensor) -> list[Tensor | None]:
    """The learned parameters' gradients from the kernel's float64 sums ``pbar``, each in its leaf's dtype and shape:
    one conversion per dtype and one split (9 µs for nine float32 leaves, against 55 µs for three small operations
    per parameter)."""
    split = {dtype: pbar.to(dtype).unbind() for dtype in {meta[0] for meta in ctx.leaf_meta if meta is not None}}
    return [
        None if meta is None else split[meta[0]][k].reshape(meta[1]) if meta[1] else split[meta[0]][k]
        for k, meta in enumerate(ctx.leaf_meta)
    ]


def _needs_grad(*tensors: Any) -> bool:
    """Whether autograd must record a kernel call on these inputs."""
    return torch.is_grad_enabled() and any(isinstance(t, Tensor) and t.requires_grad for t in tensors)


def _step_forward(
    state: Tensor, forcing: Tensor | None, values: Tensor, h, dx, imex, fdiv, project, periodic, grad: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None]:
    """One step's kernel call: (input state, output, counts, clamp mask, potentials); the potentials (the tape
    besides the state and the mask) only with ``grad``."""
    s = state.detach().contiguous()
    out = torch.empty_like(s)
    b, _, hh, ww = s.shape
    f = None if forcing is None else forcing.detach().to(s.dtype).contiguous()
    counts = torch.zeros((b, 3), dtype=torch.int64)
    mask = torch.empty((b, hh, ww), dtype=torch.uint8) if project else None
    pot = torch.empty((b, 4, hh, ww), dtype=s.dtype) if grad else None
    lib = _library(s.dtype)
    assert lib is not None
    _forward_call(lib, s, out, values, h, dx, imex, periodic, f, fdiv, counts if project else None, mask, pot)
    return s, out, counts, mask, pot


def _substeps_forward(
    state: Tensor, forcing: Tensor | None, values: Tensor, h, dx, imex, fdiv, periodic, count: int, grad: bool
) -> tuple[Tensor, Tensor, list[Tensor]]:
    """``count`` projected sub-steps: (state, summed counts, tape); the tape (each sub-step's input state,
    potentials and clamp mask) only with ``grad``."""
    s = state.detach().contiguous()
    b, _, hh, ww = s.shape
    f = None if forcing is None else forcing.detach().to(s.dtype).contiguous()
    lib = _library(s.dtype)
    assert lib is not None
    counts = torch.zeros((b, 3), dtype=torch.int64)
    mask = torch.empty((b, hh, ww), dtype=torch.uint8)
    if not grad:  # no tape: the sub-steps in one kernel call (the same calls, without Python between them)
        out, tmp = torch.empty_like(s), torch.empty_like(s) if count > 1 else None
        rc = getattr(lib, f"void_forward_substeps_{_DTYPES[s.dtype]}")(
            s.data_ptr(), out.data_ptr(), None if tmp is None else tmp.data_ptr(), int(count), b, hh, ww,
            int(periodic), values.data_ptr(), h, dx, int(imex), None if f is None else f.data_ptr(), float(fdiv),
            counts.data_ptr(), mask.data_ptr(), torch.get_num_threads(),
        )  # fmt: skip
        if rc != 0:
            raise MemoryError("the fused kernel could not allocate its work buffers")
        return out, counts, []
    step_counts = torch.zeros((b, 3), dtype=torch.int64)
    tape: list[Tensor] = []
    for _ in range(count):
        out = torch.empty_like(s)
        pot = torch.empty((b, 4, hh, ww), dtype=s.dtype) if grad else None
        m = torch.empty((b, hh, ww), dtype=torch.uint8) if grad else mask
        _forward_call(lib, s, out, values, h, dx, imex, periodic, f, fdiv, step_counts, m, pot)
        counts += step_counts
        if grad:
            assert pot is not None
            tape += [s, pot, m]
        s = out
    return s, counts, tape


class _FusedStep(torch.autograd.Function):
    @staticmethod
    def forward(ctx, state, forcing, values, h, dx, imex, fdiv, project, periodic, *leaves):
        grad = any(ctx.needs_input_grad)
        s, out, counts, mask, pot = _step_forward(state, forcing, values, h, dx, imex, fdiv, project, periodic, grad)
        ctx.save_for_backward(s, mask, pot)
        _remember(ctx, values, h, dx, imex, fdiv, periodic, forcing, leaves)
        ctx.mark_non_differentiable(counts)
        return out, counts

    @staticmethod
    def backward(ctx, *grads):
        s, mask, pot = ctx.saved_tensors
        ubar, kernel_mask, fbar = _clamp_adjoint(ctx, grads[0].contiguous(), mask)
        sbar, pbar = _backward_call(ctx, s, ubar, kernel_mask, pot)
        return (sbar, fbar, None, None, None, None, None, None, None, *_leaf_grads(ctx, pbar))


def fused_stability(
    state: Tensor, params: Any, dx: float, *, imex: bool, log_floor: float, saturation_floor: float
) -> tuple[float, float, float]:
    """The maxima over the pixels of ``state`` (``[B, 3, H, W]``) that the explicit stability estimate of
    :class:`~neuradiff.physics.void_model.ConservativeVoidModel` takes, in one pass: the c_v and c_i stiffness
    ``f + M·κ·k`` (``k = 8/dx²``) and the η curvature term (``|∂²f/∂η²|``, or its negative part with ``imex``).
    NaN anywhere gives NaN. Call :func:`fused_unavailable` first.

    Examples
    --------
    A model with ``kernel="fused"`` takes its stability estimate from it (the same value as the plain path's):

    >>> from neuradiff.physics import VoidModel, VoidParameters, single_void
    >>> s, p = single_void((16, 16), 4.0), VoidParameters()
    >>> fused = float(VoidModel("conservative", kernel="fused").stability_rate(s, p, 1.0))
    >>> plain = float(VoidModel("conservative").stability_rate(s, p, 1.0))
    >>> abs(fused - plain) <= 1e-5 * plain
    True
    """
    s = state.detach().contiguous()
    values = _values(params, log_floor, saturation_floor)
    out = torch.zeros(3, dtype=torch.float64)
    lib = _library(s.dtype)
    assert lib is not None
    b, _, hh, ww = s.shape
    getattr(lib, f"void_stability_{_DTYPES[s.dtype]}")(
        s.data_ptr(), b, hh, ww, values.data_ptr(), float(dx), int(imex), out.data_ptr()
    )
    tv, ti, te = out.tolist()
    return tv, ti, te


def fused_step(
    state: Tensor,
    params: Any,
    h: float,
    dx: float,
    *,
    imex: bool,
    log_floor: float,
    saturation_floor: float,
    forcing: Tensor | None = None,
    forcing_divisor: int = 1,
    project: bool = False,
    boundary: str = "periodic",
) -> tuple[Tensor, Tensor]:
    """One Euler (sub-)step of the conservative void model, ``[B, 3, H, W]``, and the out-of-bounds counts.

    ``u = state + h·rate / (1 + h·d)`` (``d = 0`` unless ``imex``); with ``project``, the conservative
    projection of ``u + forcing / forcing_divisor`` follows (η clamped to [0, 1]; counts ``[B, 3]`` of the
    values outside [0, 1] before it, as :meth:`~neuradiff.physics.void_model.ConservativeVoidModel.project`),
    else the counts are zero. ``boundary``: ``"periodic"`` or ``"no-flux"``. Differentiable with respect to
    ``state``, ``forcing`` and the nine learned
    parameters (scalar tensors or floats). Call :func:`fused_unavailable` first; the caller falls back to
    the plain path when it gives a reason.
    """
    if forcing is not None and not project:
        raise ValueError("a forcing increment is added by the projected step only (project=True)")
    values = _values(params, log_floor, saturation_floor)
    leaves = [getattr(params, k) for k in KERNEL_LEARNED]
    args = (state, forcing, values, float(h), float(dx), bool(imex), int(forcing_divisor), bool(project))
    if not _needs_grad(state, forcing, *leaves):  # nothing to record: the kernel call without autograd's work
        _, out, counts, _, _ = _step_forward(*args, boundary == "periodic", False)
    else:
        out, counts = _FusedStep.apply(*args, boundary == "periodic", *leaves)
    return out, counts


class _FusedSubsteps(torch.autograd.Function):
    """``count`` projected sub-steps in one call: the same kernel calls as ``count`` :class:`_FusedStep` calls, and
    the same tape (each sub-step's input state, potentials and clamp mask), without autograd's per-call work."""

    @staticmethod
    def forward(ctx, state, forcing, values, h, dx, imex, fdiv, periodic, count, *leaves):
        grad = any(ctx.needs_input_grad)
        s, counts, tape = _substeps_forward(state, forcing, values, h, dx, imex, fdiv, periodic, count, grad)
        ctx.save_for_backward(*tape)
        _remember(ctx, values, h, dx, imex, fdiv, periodic, forcing, leaves)
        ctx.mark_non_differentiable(counts)
        return s, counts

    @staticmethod
    def backward(ctx, *grads):
        tape = ctx.saved_tensors
        ubar = grads[0].contiguous()
        fbar = None
        ptotal = torch.zeros(len(KERNEL_LEARNED), dtype=torch.float64)
        for k in range(len(tape) // 3 - 1, -1, -1):
            s, pot, mask = tape[3 * k : 3 * k + 3]
            ubar, kernel_mask, part = _clamp_adjoint(ctx, ubar, mask)
            if part is not None:
                fbar = part if fbar is None else fbar + part  # part is a fresh tensor the kernel only reads
            ubar, pbar = _backward_call(ctx, s, ubar, kernel_mask, pot)
            ptotal += pbar
        return (ubar, fbar, None, None, None, None, None, None, None, *_leaf_grads(ctx, ptotal))


def fused_substeps(
    state: Tensor,
    params: Any,
    h: float,
    dx: float,
    count: int,
    *,
    imex: bool,
    log_floor: float,
    saturation_floor: float,
    forcing: Tensor | None = None,
    forcing_divisor: int = 1,
    boundary: str = "periodic",
) -> tuple[Tensor, Tensor]:
    """``count`` projected sub-steps of :func:`fused_step` (``project=True``, the same ``forcing`` each), in one
    call; returns the state and the out-of-bounds counts summed over the sub-steps. The same arithmetic and
    gradients as ``count`` :func:`fused_step` calls, with the per-call work of autograd and of the parameter
    checks done once. ``state``: ``[B, 3, H, W]`` (c_v, c_i, η); ``h``: the sub-step length (simulation time
    units); ``dx``: the grid spacing; counts ``[B, 3]``.

    Examples
    --------
    A model with ``kernel="fused"`` calls it for the sub-steps of a split step (and steps on the plain path where
    the kernel cannot run):

    >>> from neuradiff.physics import VoidModel, VoidParameters, single_void
    >>> model = VoidModel("conservative", kernel="fused")
    >>> out, counts = model.euler_substeps(single_void((16, 16), 4.0), VoidParameters(), 0.01, 1.0, 3)
    >>> tuple(out.shape), tuple(counts.shape)
    ((1, 3, 16, 16), (1, 3))
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    values = _values(params, log_floor, saturation_floor)
    leaves = [getattr(params, k) for k in KERNEL_LEARNED]
    args = (state, forcing, values, float(h), float(dx), bool(imex), int(forcing_divisor), boundary == "periodic")
    if not _needs_grad(state, forcing, *leaves):  # nothing to record: the kernel calls without autograd's work
        out, counts, _ = _substeps_forward(*args, int(count), False)
    else:
        out, counts = _FusedSubsteps.apply(*args, int(count), *leaves)
    return out, counts


#: Parameters of the stochastic increment that the kernel reads but does not differentiate.
FORCING_FIXED = ("p_casc", "V_g", "bias", "noise")


def forcing_fixed_unavailable(params: Any) -> str | None:
    """Why a fused stochastic increment cannot read ``params``' :data:`FORCING_FIXED` (``None`` if it can): each must
    be a float or a scalar tensor that needs no gradient."""
    for name in FORCING_FIXED:
        v = getattr(params, name)
        if isinstance(v, Tensor) and (v.numel() != 1 or v.requires_grad):
            return f"the fused kernel does not differentiate {name}"
    return None


def forcing_values(params: Any, dt: float, eta_max: float) -> Tensor:
    """The stochastic increment kernels' parameter vector: :data:`FORCING_FIXED`, η_max and dt (float64)."""
    return torch.tensor(
        [*(scalar(getattr(params, k)) for k in FORCING_FIXED), float(eta_max), float(dt)], dtype=torch.float64
    )


def fused_forcing_unavailable(state: Tensor, params: Any, draws: dict[str, Tensor]) -> str | None:
    """Why :func:`fused_forcing` cannot compute this increment (``None`` if it can); call after
    :func:`fused_unavailable` said the step can run."""
    reason = forcing_fixed_unavailable(params)
    if reason is not None:
        return reason
    xi = draws.get("xi")
    if xi is None or tuple(xi.shape) != (state.shape[0], 5, *state.shape[2:]):
        return "the draws are not those of the conservative model"
    return None


class _FusedForcing(torch.autograd.Function):
    @staticmethod
    def forward(ctx, state, gate, ampl, xi, values, extra, dx, *leaves):
        s = state.detach().contiguous()
        g, a, x = (t.detach().to(s.dtype).contiguous() for t in (gate, ampl, xi))
        out = torch.empty_like(s)
        lib = _library(s.dtype)
        assert lib is not None
        b, _, hh, ww = s.shape
        rc = getattr(lib, f"void_forcing_{_DTYPES[s.dtype]}")(
            s.data_ptr(), g.data_ptr(), a.data_ptr(), x.data_ptr(), out.data_ptr(), b, hh, ww,
            values.data_ptr(), extra.data_ptr(), dx, torch.get_num_threads(),
        )  # fmt: skip
        if rc != 0:
            raise MemoryError("the fused kernel could not allocate its work buffers")
        ctx.save_for_backward(s, x)
        ctx.values, ctx.extra, ctx.dx = values, extra, dx
        ctx.leaf_meta = [(leaf.dtype, leaf.shape) if isinstance(leaf, Tensor) else None for leaf in leaves]
        return out

    @staticmethod
    def backward(ctx, obar):
        s, x = ctx.saved_tensors
        ob = obar.contiguous()
        sbar = torch.empty_like(s)
        pbar = torch.zeros(len(KERNEL_LEARNED), dtype=torch.float64)
        lib = _library(s.dtype)
        assert lib is not None
        b, _, hh, ww = s.shape
        rc = getattr(lib, f"void_forcing_backward_{_DTYPES[s.dtype]}")(
            s.data_ptr(), x.data_ptr(), ob.data_ptr(), sbar.data_ptr(), pbar.data_ptr(), b, hh, ww,
            ctx.values.data_ptr(), ctx.extra.data_ptr(), ctx.dx, torch.get_num_threads(),
        )  # fmt: skip
        if rc != 0:
            raise MemoryError("the fused kernel could not allocate its work buffers")
        return (sbar, None, None, None, None, None, None, *_leaf_grads(ctx, pbar))


def fused_forcing(
    state: Tensor, params: Any, draws: dict[str, Tensor], dt: float, dx: float, *, eta_max: float
) -> Tensor:
    """The stochastic increment of one step of the conservative void model, ``[B, 3, H, W]``, from its draws
    (``gate``, ``amplitude`` ``[B, H, W]``, ``xi`` ``[B, 5, H, W]``): cascades where η < ``eta_max`` and
    conservative Langevin noise, as :meth:`~neuradiff.physics.void_model.ConservativeVoidModel.forcing_increment`
    computes them, in two passes. Differentiable with respect to ``state`` (c_v and c_i through the mobilities)
    and kBT, D_v, D_i and L. Call :func:`fused_unavailable` and :func:`fused_forcing_unavailable` first.

    Examples
    --------
    A model with ``kernel="fused"`` takes a stochastic step's increment from it:

    >>> import torch
    >>> from neuradiff.physics import VoidModel, VoidParameters, single_void
    >>> model, s = VoidModel("conservative", kernel="fused"), single_void((16, 16), 4.0)
    >>> draws = model.draw(torch.Generator().manual_seed(0), tuple(s.shape), s.dtype)
    >>> tuple(model.forcing_increment(s, VoidParameters(), draws, 0.02, 1.0).shape)
    (1, 3, 16, 16)
    """
    values = _values(params, 0.0, 0.0)
    extra = forcing_values(params, dt, eta_max)
    leaves = [getattr(params, k) for k in KERNEL_LEARNED]
    return _FusedForcing.apply(state, draws["gate"], draws["amplitude"], draws["xi"], values, extra, float(dx), *leaves)
