"""Where a rollout's random numbers come from: none, a seeded keyed stream, or a recorded realisation.

The numbers of step ``n`` are drawn from a generator seeded by (seed, n) alone, so a rollout is
reproducible from its seed, can be recomputed inside checkpointed backpropagation, and a training loss
that replays the same (seed, steps) sees the same realisation (common random numbers). Draws happen on
the CPU and are moved to the state's device, so the numbers do not depend on the device. The numbers come from
torch's generator or, on request, from the counter-based Philox4x32-10 (:mod:`~neuradiff.physics.random_numbers`).
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from neuradiff.physics.model import PhaseFieldModel
from neuradiff.physics.random_numbers import GENERATORS, PhiloxNumbers, RandomNumbers, TorchNumbers, keyed_draws

_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def step_seed(seed: int, step: int) -> int:
    """A well-mixed 63-bit seed for step ``step`` of the stream ``seed``."""
    return _splitmix64((_splitmix64(int(seed) & _MASK64) ^ int(step)) & _MASK64) >> 1


class Forcing(Protocol):
    """Supplies the random numbers of a step (``None``: deterministic step)."""

    def draws(self, model: PhaseFieldModel, step: int, state: Tensor) -> dict[str, Tensor] | None: ...


class NoForcing:
    """Deterministic rollouts: no cascades, no noise."""

    def draws(self, model: PhaseFieldModel, step: int, state: Tensor) -> None:
        return None

    def __repr__(self) -> str:
        return "NoForcing()"


class RandomForcing:
    """Cascades and noise from a keyed stream: the numbers of step n depend only on (seed, n).

    ``generator``: ``"torch"`` (torch's Mersenne Twister seeded with the step's key: the realisations of every
    version so far) or ``"philox"`` (Philox4x32-10 keyed by it, :mod:`~neuradiff.physics.random_numbers`: a
    different realisation of the same distribution, drawn 2–3 times faster by a compiled loop). With Philox the
    draws are the key alone (:func:`~neuradiff.physics.random_numbers.keyed_draws`): the model makes the numbers where
    it uses them, and :meth:`~neuradiff.physics.model.PhaseFieldModel.realise` gives them as fields.

    Examples
    --------
    >>> from neuradiff.physics import VoidModel, single_void
    >>> state, model = single_void((16, 16)), VoidModel()
    >>> sorted(RandomForcing(3).draws(model, 0, state))
    ['amplitude', 'gate', 'xi']
    >>> keyed = RandomForcing(3, generator="philox").draws(model, 0, state)
    >>> sorted(keyed), tuple(model.realise(keyed, state)["xi"].shape)
    (['philox_key'], (1, 5, 16, 16))
    """

    def __init__(self, seed: int, generator: str = "torch") -> None:
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if generator not in GENERATORS:
            raise ValueError(f"generator must be one of {', '.join(GENERATORS)}, got {generator!r}")
        self.seed, self.generator = seed, generator

    def numbers(self, step: int) -> RandomNumbers:
        """The source of step ``step``'s numbers."""
        key = step_seed(self.seed, step)
        if self.generator == "philox":
            return PhiloxNumbers(key)
        return TorchNumbers(torch.Generator(device="cpu").manual_seed(key))

    def draws(self, model: PhaseFieldModel, step: int, state: Tensor) -> dict[str, Tensor] | None:
        if self.generator == "philox":  # the key: the model makes the numbers where it uses them
            return keyed_draws(step_seed(self.seed, step)) if model.random_terms else None
        out = model.draw(self.numbers(step), tuple(state.shape), state.dtype)
        if out is None:
            return None
        return {k: v.to(state.device) for k, v in out.items()}

    def __repr__(self) -> str:
        extra = "" if self.generator == "torch" else f", generator={self.generator!r}"
        return f"RandomForcing(seed={self.seed}{extra})"


class RecordedForcing:
    """A realisation recorded step by step and replayed exactly; a missing step raises ``ValueError``."""

    def __init__(self, record: dict[int, dict[str, Tensor]] | None = None) -> None:
        self.record: dict[int, dict[str, Tensor]] = dict(record or {})

    @classmethod
    def capture(cls, source: Forcing, model: PhaseFieldModel, state: Tensor, steps: range) -> RecordedForcing:
        """Record what ``source`` draws for ``steps`` on states shaped like ``state``."""
        rec = {}
        for n in steps:
            d = source.draws(model, n, state)
            if d is not None:
                rec[n] = {k: v.clone() for k, v in d.items()}
        return cls(rec)

    def draws(self, model: PhaseFieldModel, step: int, state: Tensor) -> dict[str, Tensor]:
        try:
            d = self.record[step]
        except KeyError:
            raise ValueError(f"the recorded realisation has no step {step}") from None
        return {k: v.to(state.device) for k, v in d.items()}


def as_forcing(forcing: Forcing | int | None) -> Forcing:
    """``None`` → :class:`NoForcing`; an int seed → :class:`RandomForcing`; a forcing is returned as is."""
    if forcing is None:
        return NoForcing()
    if isinstance(forcing, bool):
        raise ValueError("forcing must be None, a seed or a Forcing")
    if isinstance(forcing, int):
        return RandomForcing(forcing)
    if not hasattr(forcing, "draws"):
        raise ValueError(f"forcing must be None, a seed or a Forcing, got {type(forcing).__name__}")
    return forcing
