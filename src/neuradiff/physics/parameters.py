"""Typed sets of physical parameters, their validation, and a bounded positive form for learning.

A parameter set is a frozen dataclass whose fields are scalars (``float`` or 0-d ``torch.Tensor``) and
whose field metadata carry a :class:`ParameterSpec` (unit, learning bounds, default role). Values are
checked on construction: a NaN, an infinite or a negative value raises ``ValueError`` naming the
parameter.

:class:`LearnableParameters` turns a set into an ``nn.Module`` whose learned entries live on an
unconstrained scale ``raw`` and map into their bounds by

    value = exp(log lo + (log hi − log lo) · sigmoid(raw))     (``scale="log"``, lo > 0)
    value = lo + (hi − lo) · sigmoid(raw)                         (``scale="linear"``)

so that no optimiser step can make a mobility or temperature vanish, turn negative or explode.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar, Union

import torch
from torch import Tensor, nn

Value = Union[float, Tensor]


@dataclass(frozen=True)
class ParameterSpec:
    """What a parameter means: unit, valid range, learning bounds and whether it is learned by default."""

    unit: str
    description: str
    bounds: tuple[float, float]
    learn: bool = False
    scale: str = "log"  # "log" (lo > 0) or "linear"
    minimum: float = 0.0  # smallest valid value (inclusive)
    maximum: float = math.inf  # largest valid value (inclusive)


def parameter(
    default: float,
    unit: str,
    description: str,
    bounds: tuple[float, float],
    *,
    learn: bool = False,
    scale: str = "log",
    minimum: float = 0.0,
    maximum: float = math.inf,
) -> Any:
    """A dataclass field carrying a :class:`ParameterSpec`."""
    spec = ParameterSpec(unit, description, bounds, learn, scale, minimum, maximum)
    return dataclasses.field(default=default, metadata={"spec": spec})


def _as_float(value: Value) -> float:
    return float(value.detach().cpu()) if isinstance(value, Tensor) else float(value)


P = TypeVar("P", bound="ParameterSet")


@dataclass(frozen=True)
class ParameterSet:
    """Base of the typed parameter sets; subclasses declare fields with :func:`parameter`."""

    model_name: ClassVar[str] = "model"

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            spec: ParameterSpec = f.metadata["spec"]
            value = getattr(self, f.name)
            if isinstance(value, Tensor):
                if value.numel() != 1:
                    raise ValueError(f"parameter {f.name} must be a scalar, got shape {tuple(value.shape)}")
                v = _as_float(value)
            else:
                try:
                    v = float(value)
                except (TypeError, ValueError):
                    raise ValueError(f"parameter {f.name} must be a number, got {value!r}") from None
                object.__setattr__(self, f.name, v)
            if not math.isfinite(v):
                raise ValueError(f"parameter {f.name} is {v}; it must be a finite number")
            if v < spec.minimum or v > spec.maximum:
                if spec.minimum == 0.0 and v < 0:
                    raise ValueError(f"parameter {f.name} = {v:g} is negative; it must be >= 0 ({spec.description})")
                raise ValueError(
                    f"parameter {f.name} = {v:g} is outside its valid range "
                    f"[{spec.minimum:g}, {spec.maximum:g}] ({spec.description})"
                )

    # ----------------------------------------------------------------------------------------------
    @classmethod
    def specs(cls) -> dict[str, ParameterSpec]:
        """Name → :class:`ParameterSpec` of every parameter, in declaration order."""
        return {f.name: f.metadata["spec"] for f in dataclasses.fields(cls)}

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def default_learned(cls) -> tuple[str, ...]:
        """Names learned by default (the paper's set for the void model)."""
        return tuple(n for n, s in cls.specs().items() if s.learn)

    def replace(self: P, **changes: Value) -> P:
        """A copy with some values changed (validated)."""
        unknown = set(changes) - set(self.names())
        if unknown:
            raise ValueError(
                f"unknown parameter(s) {', '.join(sorted(unknown))} for {self.model_name}; "
                f"known: {', '.join(self.names())}"
            )
        return dataclasses.replace(self, **changes)

    def as_floats(self) -> dict[str, float]:
        """Name → plain float (detached)."""
        return {n: _as_float(getattr(self, n)) for n in self.names()}

    def describe(self) -> dict[str, dict[str, Any]]:
        """Name → {value, unit, description}, for JSON outputs."""
        specs = self.specs()
        return {
            n: {"value": v, "unit": specs[n].unit, "description": specs[n].description}
            for n, v in self.as_floats().items()
        }

    @classmethod
    def from_mapping(cls: type[P], values: Mapping[str, Any], *, base: P | None = None) -> P:
        """Build from a mapping of name → value (or → {"value": ...}); unknown names raise ``ValueError``."""
        plain = {k: (v["value"] if isinstance(v, Mapping) else v) for k, v in values.items()}
        start = base if base is not None else cls()
        return start.replace(**plain)


class LearnableParameters(nn.Module):
    """A parameter set as a module: learned entries are bounded and positive, frozen ones are buffers.

    Parameters
    ----------
    initial : ParameterSet
        Starting values (also the values of frozen entries).
    learn : iterable of str, optional
        Names to learn; default: the set's ``default_learned()``.
    bounds : mapping name → (lo, hi), optional
        Overrides of the learning bounds.

    Calling the module returns a parameter set of the same class whose values are 0-d tensors.
    """

    def __init__(
        self,
        initial: ParameterSet,
        learn: Iterable[str] | None = None,
        bounds: Mapping[str, tuple[float, float]] | None = None,
    ) -> None:
        super().__init__()
        self.param_class = type(initial)
        specs = initial.specs()
        learn = tuple(initial.default_learned() if learn is None else learn)
        unknown = [n for n in learn if n not in specs]
        if unknown:
            raise ValueError(f"cannot learn unknown parameter(s) {', '.join(unknown)}")
        self.learned = learn
        self.bounds: dict[str, tuple[float, float]] = {}
        self.scales: dict[str, str] = {}
        self.raw = nn.ParameterDict()
        values = initial.as_floats()
        for name, spec in specs.items():
            if name in learn:
                lo, hi = (bounds or {}).get(name, spec.bounds)
                if not (lo < hi) or (spec.scale == "log" and lo <= 0):
                    raise ValueError(
                        f"bounds of {name} must satisfy 0 < lo < hi (log scale) or lo < hi, got {(lo, hi)}"
                    )
                v = values[name]
                if not (lo < v < hi):
                    raise ValueError(f"initial {name} = {v:g} is outside its learning bounds ({lo:g}, {hi:g})")
                self.bounds[name], self.scales[name] = (lo, hi), spec.scale
                self.raw[name] = nn.Parameter(torch.tensor(self._inverse(v, lo, hi, spec.scale), dtype=torch.float64))
            else:
                self.register_buffer(f"fixed_{name}", torch.tensor(values[name], dtype=torch.float64))

    @staticmethod
    def _inverse(v: float, lo: float, hi: float, scale: str) -> float:
        u = (math.log(v) - math.log(lo)) / (math.log(hi) - math.log(lo)) if scale == "log" else (v - lo) / (hi - lo)
        return math.log(u) - math.log1p(-u)

    def value(self, name: str) -> Tensor:
        """The current physical value of ``name`` as a 0-d tensor."""
        if name in self.raw:
            lo, hi = self.bounds[name]
            u = torch.sigmoid(self.raw[name])
            if self.scales[name] == "log":
                return torch.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * u)
            return lo + (hi - lo) * u
        return getattr(self, f"fixed_{name}")

    def forward(self) -> ParameterSet:
        return self.param_class(**{n: self.value(n) for n in self.param_class.names()})

    def set_value(self, name: str, value: float) -> None:
        """Move a learned parameter to a physical value (inside its bounds)."""
        with torch.no_grad():
            if name in self.raw:
                lo, hi = self.bounds[name]
                self.raw[name].fill_(self._inverse(value, lo, hi, self.scales[name]))
            else:
                getattr(self, f"fixed_{name}").fill_(value)
