"""The random numbers of a step: torch's generator, or Philox4x32-10, a counter-based generator.

A model's :meth:`~neuradiff.physics.model.PhaseFieldModel.draw` asks a :class:`RandomNumbers` for the uniform and
standard-normal fields a step needs, in a fixed order. Two sources:

* :class:`TorchNumbers` wraps a ``torch.Generator`` (the Mersenne Twister on the CPU): the numbers of every seeded
  simulation since the first version.
* :class:`PhiloxNumbers` computes them with Philox4x32-10 (Salmon et al., SC 2011): element ``i`` of the ``k``-th
  field a step asks for is a function of (key, ``k``, ``i``) alone, so a compiled loop (``kernels/philox.c``)
  produces them 2–3 times faster than torch's sequential generator, on any number of threads with the same bits.
  Without a C compiler the same words come from torch integer arithmetic (:func:`philox_words`); the uniform
  numbers are then the same to the bit and the normal ones z within 6e-7·max(|z|, 1) (the compiled float32 loop uses
  a polynomial logarithm, sine and cosine: within 2.8e-7·max(|z|, 1) of the exact transform of its words, 6.2e-7 at
  most, over 16.8 million numbers).

A :class:`~neuradiff.physics.forcing.RandomForcing` with Philox hands a step its key alone (:func:`keyed_draws`): the
fused reference kernel makes the numbers from it while it writes the step's increment, without a field of numbers
(:func:`~neuradiff.physics.fused_reference.fused_reference_philox_forcing`), and every other path makes the fields
(:meth:`~neuradiff.physics.model.PhaseFieldModel.realise`): the same numbers either way.

Block ``m`` of field ``f`` under a 64-bit key is Philox4x32-10 of the counter (m mod 2³², m / 2³², f, 0) with the key's
low and high 32 bits; its words w₀..w₃ become elements ``j·q + m`` (j = 0..3) of a field of n elements, q = ⌈n/4⌉.
A uniform number is (w >> 8)·2⁻²⁴ in float32 and w·2⁻³² in float64, in [0, 1). Normal numbers come in Box-Muller
pairs from words (w₀, w₁) and (w₂, w₃): √(−2 ln u₁)·(cos, sin)(2π u₂), u₁ = ((w₀ >> 8) + 1)·2⁻²⁴ ∈ (0, 1] (float64:
(w₀ + 1)·2⁻³²) and u₂ the uniform number of w₁.

Examples
--------
>>> import torch
>>> from neuradiff.physics.random_numbers import PhiloxNumbers, philox_words
>>> [hex(int(w)) for w in philox_words(0, 0, 1)[:, 0]]  # the published known answer for counter 0, key 0
['0x6627e8d5', '0xe169c58d', '0xbc57ac4c', '0x9b00dbd8']
>>> numbers = PhiloxNumbers(key=12345)
>>> numbers.rand((2, 3), torch.float32).shape
torch.Size([2, 3])
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
from torch import Tensor

from neuradiff.physics.fused import _library

_MASK32 = 0xFFFFFFFF
_M0, _M1 = 0xD2511F53, 0xCD9E8D57
_W0, _W1 = 0x9E3779B9, 0xBB67AE85
_ROUNDS = 10
#: Generators a forcing can draw from (:class:`~neuradiff.physics.forcing.RandomForcing`).
GENERATORS = ("torch", "philox")
#: The entry of keyed draws (:func:`keyed_draws`).
PHILOX_KEY = "philox_key"


class RandomNumbers(Protocol):
    """Uniform ``[0, 1)`` and standard-normal fields on the CPU, in the order a step asks for them."""

    def rand(self, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor: ...

    def randn(self, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor: ...


class TorchNumbers:
    """Fields from a ``torch.Generator`` (``torch.rand``, ``torch.randn``)."""

    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator

    def rand(self, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        return torch.rand(shape, generator=self.generator, dtype=dtype)

    def randn(self, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        return torch.randn(shape, generator=self.generator, dtype=dtype)


class PhiloxNumbers:
    """Fields from Philox4x32-10 under ``key`` (a 64-bit integer): the k-th field asked for is field k of the key.

    ``compiled=False`` computes them with torch integer arithmetic instead of the compiled loop (the same uniform
    numbers to the bit; normal ones z within 6e-7·max(|z|, 1)).
    """

    def __init__(self, key: int, *, compiled: bool = True) -> None:
        if not 0 <= int(key) < 1 << 64:
            raise ValueError(f"a Philox key is a 64-bit unsigned integer, got {key!r}")
        self.key, self.compiled, self.field = int(key), compiled, 0

    def rand(self, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        return self._next("uniform", shape, dtype)

    def randn(self, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        return self._next("normal", shape, dtype)

    def _next(self, kind: str, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        out = philox_field(kind, self.key, self.field, shape, dtype, compiled=self.compiled)
        self.field += 1
        return out


def keyed_draws(key: int) -> dict[str, Tensor]:
    """A step's draws as the Philox key of its numbers, ``{PHILOX_KEY: key}`` (a CPU int64 scalar holding the key's 64
    bits): the fields are made where they are used, by a kernel that reads no field of numbers or by
    :meth:`~neuradiff.physics.model.PhaseFieldModel.realise` (``model.draw(PhiloxNumbers(key), ...)``), the same
    numbers either way.

    Examples
    --------
    >>> draws_key(keyed_draws(2**64 - 1)) == 2**64 - 1
    True
    """
    if not 0 <= int(key) < 1 << 64:
        raise ValueError(f"a Philox key is a 64-bit unsigned integer, got {key!r}")
    signed = int(key) - (1 << 64) if int(key) >= 1 << 63 else int(key)
    return {PHILOX_KEY: torch.tensor(signed, dtype=torch.int64)}


def draws_key(draws: dict[str, Tensor] | None) -> int | None:
    """The Philox key of keyed draws (:func:`keyed_draws`); ``None`` for draws that hold their fields (or none)."""
    if draws is None or PHILOX_KEY not in draws:
        return None
    return int(draws[PHILOX_KEY]) & ((1 << 64) - 1)


def as_numbers(source: RandomNumbers | torch.Generator) -> RandomNumbers:
    """A ``torch.Generator`` wrapped in :class:`TorchNumbers`; a :class:`RandomNumbers` as it is."""
    return TorchNumbers(source) if isinstance(source, torch.Generator) else source


def _mulhilo(a: Tensor, m: int) -> tuple[Tensor, Tensor]:
    """High and low 32 bits of ``a · m`` (``a`` int64 in [0, 2³²), ``m`` < 2³²) without leaving int64."""
    p_lo, p_hi = a * (m & 0xFFFF), a * (m >> 16)  # each < 2^48
    lo = (p_lo + ((p_hi & 0xFFFF) << 16)) & _MASK32
    hi = ((p_lo >> 16) + p_hi) >> 16
    return hi, lo


def philox4x32(counter: list[Tensor], key: tuple[int, int], rounds: int = _ROUNDS) -> list[Tensor]:
    """Philox4x32 (``rounds`` rounds) of the four counter words (int64 tensors in [0, 2³²)) under the key words.

    Plain torch integer arithmetic (every product split so that nothing leaves int64), on any device.

    Examples
    --------
    >>> import torch
    >>> ones = [torch.tensor([0xFFFFFFFF])] * 4
    >>> [hex(int(w)) for w in philox4x32(ones, (0xFFFFFFFF, 0xFFFFFFFF))]  # a published known answer
    ['0x408f276d', '0x41c83b0e', '0xa20bc7c6', '0x6d5451fd']
    """
    c = list(counter)
    k0, k1 = key[0] & _MASK32, key[1] & _MASK32
    for _ in range(rounds):
        hi0, lo0 = _mulhilo(c[0], _M0)
        hi1, lo1 = _mulhilo(c[2], _M1)
        c = [hi1 ^ c[1] ^ k0, lo1, hi0 ^ c[3] ^ k1, lo0]
        k0, k1 = (k0 + _W0) & _MASK32, (k1 + _W1) & _MASK32
    return c


def philox_words(key: int, field: int, blocks: int, device: torch.device | str = "cpu") -> Tensor:
    """The four 32-bit words of blocks ``0 .. blocks-1`` of ``field`` under ``key``, ``[4, blocks]`` int64: the
    reference the compiled loop is tested against."""
    m = torch.arange(blocks, dtype=torch.int64, device=device)
    counter = [m & _MASK32, m >> 32, torch.full_like(m, int(field) & _MASK32), torch.zeros_like(m)]
    return torch.stack(philox4x32(counter, (int(key) & _MASK32, int(key) >> 32)))


def _uniform_of(w: Tensor, dtype: torch.dtype) -> Tensor:
    if dtype == torch.float32:
        return (w >> 8).to(torch.float32) * 2.0**-24
    return w.to(torch.float64) * 2.0**-32


def _words_to_field(kind: str, w: Tensor, dtype: torch.dtype) -> Tensor:
    """``[4, q]`` words → 4q uniform or normal numbers in the element order of the module docstring."""
    if kind == "uniform":
        return _uniform_of(w, dtype).reshape(-1)
    if dtype == torch.float32:
        open_u = ((w[0::2] >> 8) + 1).to(torch.float64) * 2.0**-24
    else:
        open_u = (w[0::2] + 1).to(torch.float64) * 2.0**-32
    r = torch.sqrt(-2.0 * torch.log(open_u))
    angle = 2.0 * math.pi * _uniform_of(w[1::2], dtype).to(torch.float64)
    z = torch.stack(
        (r[0] * torch.cos(angle[0]), r[0] * torch.sin(angle[0]), r[1] * torch.cos(angle[1]), r[1] * torch.sin(angle[1]))
    )
    return z.to(dtype).reshape(-1)


def philox_field(
    kind: str, key: int, field: int, shape: tuple[int, ...], dtype: torch.dtype, *, compiled: bool = True
) -> Tensor:
    """Field ``field`` of ``key`` as a CPU tensor of ``shape``: ``kind`` ``"uniform"`` ([0, 1)) or ``"normal"``.

    Examples
    --------
    >>> import torch
    >>> a = philox_field("normal", 7, 0, (3, 5), torch.float64)
    >>> b = philox_field("normal", 7, 0, (3, 5), torch.float64, compiled=False)
    >>> bool(torch.allclose(a, b, rtol=0, atol=1e-12))
    True
    """
    if kind not in ("uniform", "normal"):
        raise ValueError(f"kind must be 'uniform' or 'normal', got {kind!r}")
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"Philox fields are float32 or float64, got {dtype}")
    n = math.prod(shape)
    q = -(-n // 4)
    lib = _library(dtype, "philox") if compiled and q > 0 else None
    if lib is None:
        return _words_to_field(kind, philox_words(key, field, q), dtype)[:n].reshape(shape)
    buf = torch.empty(4 * q, dtype=dtype)
    suffix = "f32" if dtype == torch.float32 else "f64"
    fn = getattr(lib, f"philox_{kind}_{suffix}")
    fn(int(key) & _MASK32, (int(key) >> 32) & _MASK32, int(field) & _MASK32, q, buf.data_ptr(), torch.get_num_threads())
    return buf[:n].view(shape)
