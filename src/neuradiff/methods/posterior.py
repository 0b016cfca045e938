"""What a fit's data determine about its physical parameters, and how well: identifiability, a Laplace posterior
and forecast bands, all from the residuals of a curve the model must reproduce (e.g. the void area of every
frame) and their Jacobian in log-parameter space.

With residuals ``r(θ)`` (``n`` observations) and ``J = ∂r/∂ ln θ`` at the optimum, the Gauss-Newton (Fisher)
matrix is

    F = Jᵀ J / (σ² φ),      σ² = |r|² / (n − rank J),      φ = (1 + ρ) / (1 − ρ)

where ``ρ ∈ [0, 0.9]`` is the lag-1 autocorrelation of the residuals: consecutive frames of a video do not make
independent observations, and ``φ`` is the variance inflation of an AR(1) series. The eigen-directions of ``F``
are combinations ``Π θ_j^{e_j}`` of the parameters; one whose 90 % interval lies within ±25 % of its value is
*determined*, one whose interval lies within a factor of 2 either way is *bounded* (the data constrain it, but not
well enough to call it known), the others are not determined.

The Laplace posterior ``F⁻¹`` holds the undetermined parameters at their fitted values, but their true values
are unknown, and away from the optimum the determined combinations compensate for them (the curve is flat along
an undetermined direction only locally). :func:`nuisance_covariance` measures that: it draws the undetermined
parameters from a prior around their fitted values (``ln θ`` spread ``s``), simulates each draw once and refits
the determined directions to it by one Gauss-Newton step; the covariance of those shifts is added to ``F⁻¹``
before the determined directions are chosen (:func:`analyse`, ``extra_covariance``). The posterior is then
``ln θ ~ N(ln θ̂, Σ_k v_k v_kᵀ s_k²)`` over the determined directions ``v_k`` with standard deviations ``s_k``;
parameters along undetermined directions stay at their fitted values. Forecast bands propagate the posterior
through the simulator by sigma points (the forecasts at ``±1`` standard deviation along each determined
direction, combined linearly) and add the observation noise ``σ``.

What neither part sees is the model's own error: a learner that steps in time more coarsely than the process it
models, or leaves out its random terms, reproduces the curve best at parameters a little off the true ones,
however many frames it sees. :func:`analyse` takes a ``discrepancy`` (a standard deviation of ``ln θ`` added
along every direction, after any calibration ``scale``) for it, so that no combination is claimed to better than
that.

Everything here is pure numerics on callables; a failed or NaN evaluation marks the parameter it perturbed as
undetermined instead of raising.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from skimage.measure import label

from neuradiff.core.errors import NeuradiffError

#: Standard-normal quantile of a two-sided 90 % interval.
Z90 = 1.6448536269514722
#: A combination (or a parameter) is determined when its 90 % interval lies within this fraction either way of the
#: fitted value: the coverage study finds the median error of such combinations at 2–5 % (benchmarks/README.md).
DETERMINED_HALFWIDTH = 0.25
#: A direction is bounded (kept in the posterior, reported with its interval) when its 90 % interval lies within
#: this factor either way of the fitted value; wider ones are not determined.
BOUNDED_FACTOR = 2.0
#: Exponents below this are left out of a combination's label (they stay in its value and interval).
LABEL_EXPONENT = 0.15
#: Residuals of a parameter set ``{name: value}`` (raises or returns non-finite values when it cannot evaluate).
Residuals = Callable[[Mapping[str, float]], np.ndarray]

_PRETTY = {"kBT": "kBT", "kappa_v": "κ_v", "kappa_i": "κ_i", "kappa_eta": "κ_η"}


def pretty(name: str) -> str:
    """A parameter name as people write it (``kappa_eta`` → ``κ_η``)."""
    return _PRETTY.get(name, name)


def _evaluate(residuals: Residuals, values: Mapping[str, float]) -> np.ndarray | None:
    try:
        r = np.asarray(residuals(values), dtype=np.float64)
    except (ArithmeticError, ValueError, RuntimeError, NeuradiffError):
        return None
    return r if bool(np.isfinite(r).all()) else None


def log_jacobian(
    residuals: Residuals,
    values: Mapping[str, float],
    names: Sequence[str],
    *,
    step: float = 0.05,
    base: np.ndarray | None = None,
    central: bool = False,
) -> np.ndarray:
    """``J[:, j] = ∂r/∂ ln θ_j`` by finite differences (each parameter multiplied by ``exp(±step)``).

    Parameters
    ----------
    residuals : callable
        ``{name: value}`` → residual vector ``[n]``.
    values : mapping
        The point (every parameter ``residuals`` needs; only ``names`` are perturbed).
    base : ndarray, optional
        ``residuals(values)`` when already known (forward differences reuse it).
    central : bool
        Central differences (two evaluations per parameter) instead of forward ones.

    Returns
    -------
    ndarray, shape (n, len(names))
        A column is NaN where an evaluation failed or was not finite.

    Examples
    --------
    >>> f = lambda v: np.array([np.log(v["a"]) - np.log(v["b"]), 2 * np.log(v["a"])])
    >>> np.round(log_jacobian(f, {"a": 1.0, "b": 2.0}, ["a", "b"], central=True), 6).tolist()
    [[1.0, -1.0], [2.0, 0.0]]
    """
    r0 = base if base is not None or central else _evaluate(residuals, values)
    if r0 is None and not central:
        raise NeuradiffError("the residuals cannot be evaluated at the fitted parameters")
    cols = []
    for name in names:
        up = _evaluate(residuals, {**values, name: values[name] * math.exp(step)})
        if central:
            down = _evaluate(residuals, {**values, name: values[name] * math.exp(-step)})
            col = None if up is None or down is None else (up - down) / (2 * step)
        else:
            col = None if up is None or r0 is None else (up - r0) / step
        cols.append(col)
    n = next((c.size for c in cols if c is not None), 0 if r0 is None else r0.size)
    return np.stack([np.full(n, np.nan) if c is None else c for c in cols], axis=1) if cols else np.zeros((n, 0))


@dataclass
class Combination:
    """One determined or bounded combination ``Π θ_j^{e_j}`` of the parameters.

    Attributes
    ----------
    exponents : dict
        Name → exponent (the largest is 1; rounded to 0.001). The value and the interval are those of exactly
        this combination.
    label : str
        The combination in plain words, e.g. ``"E_v/kBT"``; exponents below ``LABEL_EXPONENT`` are left out of
        it (not out of ``exponents``).
    value : float
        Its fitted value.
    log_std : float
        Posterior standard deviation of its logarithm.
    interval90 : (float, float)
        Its 90 % interval.
    eigenvalue : float
        The eigenvalue of the Fisher matrix along it.
    """

    exponents: dict[str, float]
    label: str
    value: float
    log_std: float
    interval90: tuple[float, float]
    eigenvalue: float

    @property
    def relative_halfwidth(self) -> float:
        """Half-width of the 90 % interval relative to the value (±)."""
        return float(math.expm1(Z90 * self.log_std))

    @property
    def factor(self) -> float:
        """The factor either way of the value that its 90 % interval spans (``upper / value``)."""
        return float(math.exp(Z90 * self.log_std))

    @property
    def is_determined(self) -> bool:
        """Whether its 90 % interval lies within ``DETERMINED_HALFWIDTH`` of the value (else it is bounded)."""
        return self.relative_halfwidth <= DETERMINED_HALFWIDTH

    def phrase(self) -> str:
        """``"E_v/kBT is determined to ±3 % (…)"`` or ``"… is bounded within a factor 1.6 (…)"``."""
        span = f"(90 % interval {self.interval90[0]:.4g} to {self.interval90[1]:.4g})"
        if self.is_determined:
            return f"{self.label} is determined to ±{100 * self.relative_halfwidth:.2g} % {span}"
        return f"{self.label} is bounded within a factor {self.factor:.2g} {span}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "combination": self.label,
            "exponents": self.exponents,
            "value": self.value,
            "interval_90": list(self.interval90),
            "relative_halfwidth_90": self.relative_halfwidth,
            "log_std": self.log_std,
            "fisher_eigenvalue": self.eigenvalue,
        }


def label_of(exponents: Mapping[str, float]) -> str:
    """``{"E_v": 1, "kBT": -1}`` → ``"E_v/kBT"``; other exponents written as powers.

    Examples
    --------
    >>> label_of({"E_v": 1.0, "kBT": -1.0}), label_of({"D_v": 1.0, "kappa_eta": 0.5, "L": -0.31})
    ('E_v/kBT', 'D_v·κ_η^0.5/L^0.31')
    """

    def term(name: str, e: float) -> str:
        e = abs(e)
        return pretty(name) if abs(e - 1) < 0.05 else f"{pretty(name)}^{e:.2g}"

    num = [term(n, e) for n, e in exponents.items() if e > 0]
    den = [term(n, e) for n, e in exponents.items() if e < 0]
    text = "·".join(num) if num else "1"
    if den:
        text += "/" + (den[0] if len(den) == 1 else "(" + "·".join(den) + ")")
    return text


@dataclass
class Posterior:
    """Laplace posterior of ``ln θ`` in the determined subspace (module docstring).

    Attributes
    ----------
    names : list of str
        The analysed parameters.
    values : dict
        Fitted values of every parameter (also those not analysed).
    basis : ndarray, shape (len(names), k)
        Orthonormal determined directions in ``ln θ``.
    log_std : ndarray, shape (k,)
        Posterior standard deviation along each direction.
    sigma : float
        Observation noise of the residuals (their unit, e.g. px²), inflation included.

    Examples
    --------
    >>> post = Posterior(["a", "b"], {"a": 1.0, "b": 2.0}, np.array([[1.0], [0.0]]), np.array([0.1]), 0.5)
    >>> [round(p["a"], 4) for p in post.sigma_points()], post.sigma_points()[0]["b"]
    ([1.1052, 0.9048], 2.0)
    >>> lo, hi = post.interval("a"); round(lo, 3), round(hi, 3)
    (0.848, 1.179)
    >>> post.interval("b") is None
    True
    """

    names: list[str]
    values: dict[str, float]
    basis: np.ndarray
    log_std: np.ndarray
    sigma: float

    @property
    def rank(self) -> int:
        return int(self.log_std.size)

    def covariance(self) -> np.ndarray:
        """Posterior covariance of ``ln θ`` over ``names`` (zero along undetermined directions)."""
        return (self.basis * self.log_std**2) @ self.basis.T

    def _at(self, delta: np.ndarray) -> dict[str, float]:
        out = dict(self.values)
        for name, d in zip(self.names, delta):
            out[name] = float(self.values[name] * math.exp(float(d)))
        return out

    def sigma_points(self) -> list[dict[str, float]]:
        """Parameter sets at ``+1`` and ``−1`` standard deviation along each determined direction, in that order."""
        points = []
        for k in range(self.rank):
            step = self.basis[:, k] * self.log_std[k]
            points += [self._at(step), self._at(-step)]
        return points

    def sample(self, n: int, seed: int = 0) -> list[dict[str, float]]:
        """``n`` parameter sets drawn from the posterior (seeded)."""
        rng = np.random.default_rng(seed)
        z = rng.standard_normal((n, self.rank))
        return [self._at(self.basis @ (self.log_std * zk)) for zk in z]

    def interval(self, name: str, level_z: float = Z90) -> tuple[float, float] | None:
        """The 90 % interval of one parameter when it is determined on its own (``None`` otherwise)."""
        if name not in self.names or self.rank == 0:
            return None
        j = self.names.index(name)
        if float(np.sum(self.basis[j] ** 2)) < 0.9:  # mostly along undetermined directions
            return None
        s = math.sqrt(max(float(self.covariance()[j, j]), 0.0))
        v = self.values[name]
        return v * math.exp(-level_z * s), v * math.exp(level_z * s)

    def to_dict(self) -> dict[str, Any]:
        return {
            "names": list(self.names),
            "values": dict(self.values),
            "basis": self.basis.tolist(),
            "log_std": self.log_std.tolist(),
            "sigma": self.sigma,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Posterior:
        names = [str(n) for n in d["names"]]
        basis = np.asarray(d["basis"], dtype=np.float64).reshape(len(names), -1)
        log_std = np.asarray(d["log_std"], dtype=np.float64).reshape(-1)
        if basis.shape[1] != log_std.size:
            raise ValueError("posterior basis and log_std disagree in rank")
        values = {str(k): float(v) for k, v in d["values"].items()}
        return cls(names, values, basis, log_std, float(d["sigma"]))


@dataclass
class Identifiability:
    """What the data determine about the parameters (module docstring).

    Attributes
    ----------
    names : list of str
        The analysed parameters.
    determined : list of Combination
        The determined combinations (90 % interval within ``DETERMINED_HALFWIDTH``), best determined first.
    status : dict
        Name → ``"determined"`` (on its own, within ``DETERMINED_HALFWIDTH``, and through determined combinations
        only), ``"bounded"`` (on its own, within ``BOUNDED_FACTOR``), ``"in combination"`` (only through a
        combination) or ``"not determined"``.
    reasons : dict
        Name → why a parameter is not determined (e.g. the simulation failed when it was changed).
    eigenvalues : ndarray
        Eigenvalues of the Fisher matrix, descending (empty when it could not be formed).
    n_observations : int
    sigma, inflation : float
        Residual noise (before inflation) and the autocorrelation inflation ``φ``.
    intervals : dict
        Name → the 90 % interval of each parameter determined or bounded on its own.
    bounded : list of Combination
        The combinations the data bound within ``BOUNDED_FACTOR`` but do not determine, best first. The posterior
        (and so the forecast band) spans the determined and the bounded directions.
    """

    names: list[str]
    determined: list[Combination]
    status: dict[str, str]
    reasons: dict[str, str] = field(default_factory=dict)
    eigenvalues: np.ndarray = field(default_factory=lambda: np.zeros(0))
    n_observations: int = 0
    sigma: float = float("nan")
    inflation: float = 1.0
    unit: str = ""
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    bounded: list[Combination] = field(default_factory=list)

    @property
    def undetermined(self) -> list[str]:
        return [n for n in self.names if self.status[n] == "not determined"]

    def statement(self) -> str:
        """The result in plain words, e.g. "E_v/kBT is determined to ±3 % (90 %); ... not determined"."""
        parts = [c.phrase() for c in [*self.determined, *self.bounded]]

        def own(n: str) -> str:
            if n not in self.intervals:
                return pretty(n)
            return f"{pretty(n)} (90 % interval {self.intervals[n][0]:.4g} to {self.intervals[n][1]:.4g})"

        alone = [own(n) for n in self.names if self.status[n] == "determined"]
        loose = [own(n) for n in self.names if self.status[n] == "bounded"]
        combo = [pretty(n) for n in self.names if self.status[n] == "in combination"]
        free = [pretty(n) for n in self.undetermined]
        if alone:
            verb = "is determined on its own" if len(alone) == 1 else "are determined on their own"
            parts.append(f"{', '.join(alone)} {verb}")
        if loose:
            verb = "is bounded on its own" if len(loose) == 1 else "are bounded on their own"
            parts.append(f"{', '.join(loose)} {verb}")
        if combo:
            n_combos = len(self.determined) + len(self.bounded)
            which = "this combination" if n_combos == 1 else "these combinations"
            parts.append(f"{', '.join(combo)} only in {which}")
        if free:
            parts.append(f"{', '.join(free)} {'is' if len(free) == 1 else 'are'} not determined by this video")
        if not self.determined and not self.bounded:
            parts.insert(0, "No combination of the parameters is determined by this video")
        elif not self.determined:
            parts.insert(0, "No combination of the parameters is determined to ±25 % by this video")
        text = "; ".join(parts) + "."
        for name, why in self.reasons.items():
            text += f" {why[:1].upper()}{why[1:]}." if name == "*" else f" {pretty(name)}: {why}."
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "statement": self.statement(),
            "determined": [c.to_dict() for c in self.determined],
            "bounded": [c.to_dict() for c in self.bounded],
            "status": dict(self.status),
            "reasons": dict(self.reasons),
            "fisher_eigenvalues": self.eigenvalues.tolist(),
            "n_observations": self.n_observations,
            "noise_sigma": self.sigma,
            "noise_unit": self.unit,
            "autocorrelation_inflation": self.inflation,
            "intervals_90": {k: list(v) for k, v in self.intervals.items()},
            "criterion": f"a combination (or a parameter on its own) is determined when its 90 % interval lies within "
            f"±{100 * DETERMINED_HALFWIDTH:g} % of its value, bounded when it lies within a factor {BOUNDED_FACTOR:g}",
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Identifiability:
        def combination(c: Mapping[str, Any]) -> Combination:
            return Combination(
                {str(k): float(v) for k, v in c["exponents"].items()},
                str(c["combination"]),
                float(c["value"]),
                float(c["log_std"]),
                (float(c["interval_90"][0]), float(c["interval_90"][1])),
                float(c["fisher_eigenvalue"]),
            )

        combos = [combination(c) for c in d.get("determined", [])]
        bounded = [combination(c) for c in d.get("bounded", [])]
        status = {str(k): str(v) for k, v in d["status"].items()}
        return cls(
            list(status),
            combos,
            status,
            {str(k): str(v) for k, v in d.get("reasons", {}).items()},
            np.asarray(d.get("fisher_eigenvalues", []), dtype=np.float64),
            int(d.get("n_observations", 0)),
            float(d.get("noise_sigma", float("nan"))),
            float(d.get("autocorrelation_inflation", 1.0)),
            str(d.get("noise_unit", "")),
            {str(k): (float(v[0]), float(v[1])) for k, v in d.get("intervals_90", {}).items()},
            bounded,
        )


def analyse(
    residuals: np.ndarray,
    jacobian: np.ndarray,
    names: Sequence[str],
    values: Mapping[str, float],
    *,
    unit: str = "",
    floor: float = 0.0,
    observed: np.ndarray | None = None,
    extra_covariance: np.ndarray | None = None,
    scale: float = 1.0,
    discrepancy: float = 0.0,
    weak_scale: float = 1.0,
) -> tuple[Identifiability, Posterior]:
    """Identifiability and the Laplace posterior from the residuals ``[n]`` (in observation order) and ``J = ∂r/∂
    ln θ`` ``[n, p]`` at the optimum (module docstring). Never raises on a singular or non-finite ``J``:
    parameters whose column is not finite are reported as not determined, with the reason.

    Parameters
    ----------
    floor : float
        Smallest white noise the observations can have (their resolution, e.g. 0.29 px² for pixel counts).
    observed : ndarray, optional
        The observations; when all are 0 (no void in any frame) nothing is determined (the curve then bounds
        the parameters from one side only).
    extra_covariance : ndarray, shape (p, p), optional
        Covariance of ``ln θ`` added to the statistical one, e.g. :func:`nuisance_covariance` (what the
        determined combinations inherit from the parameters the data do not determine).
    scale : float
        Factor on every standard deviation of ``ln θ`` (statistical and extra parts together) before the
        determined directions are chosen: a calibration of the interval widths measured elsewhere (e.g. by a
        coverage study on synthetic data); 1 leaves the analytic widths.
    discrepancy : float
        Standard deviation of ``ln θ`` added along every direction (in quadrature, after ``scale``) for what the
        model itself gets wrong: a combination ``Π θ_j^{e_j}`` gains ``discrepancy · |e|`` in its log standard
        deviation, so no determined combination is claimed to better than that. 0: none.
    weak_scale : float
        Factor on the standard deviation of every direction but the best-determined one (after ``scale`` and
        ``discrepancy``, before the determined directions are chosen): the weaker directions carry more of the
        model's own error than the best one does, measured by a coverage study; 1: the same widths for all.

    Examples
    --------
    A curve that depends on ``a/b`` only, with noise of 0.1:

    >>> rng = np.random.default_rng(0)
    >>> J = np.stack([np.linspace(1, 2, 50), -np.linspace(1, 2, 50), np.zeros(50)], axis=1)
    >>> ident, post = analyse(0.1 * rng.standard_normal(50), J, ["a", "b", "c"], {"a": 2.0, "b": 1.0, "c": 3.0})
    >>> [c.label for c in ident.determined], ident.status["c"], post.rank
    (['a/b'], 'not determined', 1)
    """
    names = list(names)
    r = np.asarray(residuals, dtype=np.float64).reshape(-1)
    J = np.asarray(jacobian, dtype=np.float64).reshape(r.size, len(names))
    reasons: dict[str, str] = {}
    ok = np.isfinite(J).all(axis=0)
    for j in np.flatnonzero(~ok):
        reasons[names[j]] = "the simulation failed or gave NaN when it was changed, so the fit says nothing about it"
    n = r.size
    status = dict.fromkeys(names, "not determined")
    empty = Posterior(names, dict(values), np.zeros((len(names), 0)), np.zeros(0), float("nan"))
    nothing_seen = observed is not None and not bool(np.any(np.asarray(observed) != 0))
    if n == 0 or not bool(np.isfinite(r).all()) or not ok.any() or nothing_seen:
        if nothing_seen:
            reasons.setdefault(
                "*", "nothing was observed (zero in every frame): that bounds the parameters from one side only"
            )
        if n == 0:
            reasons.setdefault("*", "there were no observations")
        elif not bool(np.isfinite(r).all()):
            reasons.setdefault("*", "the residuals at the fitted parameters are not finite")
        return Identifiability(names, [], status, reasons, np.zeros(0), n, float("nan"), 1.0, unit), empty
    Jk = J[:, ok]
    _, s, vt = np.linalg.svd(Jk, full_matrices=False)
    top = float(s.max()) if s.size else 0.0
    nonzero = s > 1e-9 * max(top, 1e-300)
    sigma = max(math.sqrt(float(r @ r) / max(n - int(nonzero.sum()), 1)), floor)
    if sigma == 0.0:
        sigma = 1e-12 * max(float(np.abs(Jk).max()), 1.0)
    rho = float(r[:-1] @ r[1:] / (r @ r)) if n > 2 and float(r @ r) > 0 else 0.0
    rho = min(max(rho, 0.0), 0.9)
    inflation = (1 + rho) / (1 - rho)
    # Covariance of ln θ in the coordinates V (nonzero singular values only): the inverse Fisher matrix, plus
    # what the caller adds.
    cov_v = np.diag(sigma**2 * inflation / s[nonzero] ** 2)
    if extra_covariance is not None:
        vk = vt[nonzero].T
        extra = np.asarray(extra_covariance, dtype=np.float64)[np.ix_(ok, ok)]
        if bool(np.isfinite(extra).all()):
            cov_v = cov_v + vk.T @ extra @ vk
    if not scale > 0:
        raise NeuradiffError(f"interval scale must be > 0, got {scale}")
    if not discrepancy >= 0:
        raise NeuradiffError(f"model discrepancy must be >= 0, got {discrepancy}")
    if not weak_scale >= 1:
        raise NeuradiffError(f"weak interval scale must be >= 1, got {weak_scale}")
    cov_v = cov_v * scale**2 + discrepancy**2 * np.eye(cov_v.shape[0])
    lam_cov, w = np.linalg.eigh((cov_v + cov_v.T) / 2)
    order = np.argsort(lam_cov)
    lam_cov, w = np.maximum(lam_cov[order], 1e-300), w[:, order]
    lam_cov[1:] *= weak_scale**2
    vec = vt[nonzero].T @ w
    lam = 1 / lam_cov  # precision along each direction, largest first
    full_vec = np.zeros((len(names), vec.shape[1]))
    full_vec[ok] = vec
    limit = math.log(BOUNDED_FACTOR) / Z90
    # A direction is reported as the combination Π θ^e with its largest exponent 1, e = v / max|v| for the unit
    # vector v: its ln-width is |e| times the direction's, and the criterion applies to the combination as printed.
    norm = [1 / float(np.abs(full_vec[:, k]).max()) for k in range(lam.size)]
    keep = [k for k in range(lam.size) if norm[k] / math.sqrt(lam[k]) <= limit]
    basis = full_vec[:, keep]
    log_std = np.array([1 / math.sqrt(lam[k]) for k in keep])
    post = Posterior(names, dict(values), basis, log_std, sigma * math.sqrt(inflation))
    cov = post.covariance()
    logs = np.array([math.log(values[nm]) for nm in names])
    combos = []
    intervals: dict[str, tuple[float, float]] = {}
    for k in range(len(keep)):
        v = basis[:, k]
        big = float(np.abs(v).max())
        lead = int(np.flatnonzero(np.abs(v) >= 0.95 * big)[0])  # the first of the largest components is positive
        e = v / big * math.copysign(1.0, float(v[lead]))
        e = np.round(e, 3)
        exps = {names[j]: float(e[j]) for j in range(len(names)) if e[j] != 0}
        ev = np.array([exps.get(nm, 0.0) for nm in names])
        value = math.exp(float(ev @ logs))
        std = math.sqrt(max(float(ev @ cov @ ev), 0.0))
        combos.append(
            Combination(
                exps,
                label_of({nm: x for nm, x in exps.items() if abs(x) >= LABEL_EXPONENT}),
                value,
                std,
                (value * math.exp(-Z90 * std), value * math.exp(Z90 * std)),
                float(lam[keep[k]]),
            )
        )
    tight = [k for k, c in enumerate(combos) if c.is_determined]
    for j, name in enumerate(names):
        load = float(np.sum(basis[j] ** 2)) if basis.size else 0.0
        load_tight = float(np.sum(basis[j, tight] ** 2)) if tight else 0.0
        # On its own only when its own 90 % interval also lies within the limits (the criteria of a combination),
        # and determined only when it lies (mostly) in the span of the determined combinations: a parameter that
        # needs a bounded combination to be pinned down is no better known than that combination.
        own = math.sqrt(max(float(cov[j, j]), 0.0))
        if load >= 0.9 and Z90 * own <= math.log(BOUNDED_FACTOR):
            narrow = math.expm1(Z90 * own) <= DETERMINED_HALFWIDTH and load_tight >= 0.9
            status[name] = "determined" if narrow else "bounded"
            v = float(values[name])
            intervals[name] = (v * math.exp(-Z90 * own), v * math.exp(Z90 * own))
        elif load >= 0.09:
            status[name] = "in combination"
    determined = [c for c in combos if c.is_determined]
    bounded = [c for c in combos if not c.is_determined]
    ident = Identifiability(names, determined, status, reasons, lam, n, sigma, inflation, unit, intervals, bounded)
    return ident, post


def nuisance_covariance(
    residuals: Residuals,
    posterior: Posterior,
    jacobian: np.ndarray,
    base: np.ndarray,
    *,
    spread: float = 0.5,
    samples: int = 8,
    seed: int = 0,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    steps: int = 1,
) -> np.ndarray:
    """What the determined combinations inherit from the parameters the data do not determine.

    The Laplace posterior holds the undetermined directions at their fitted values, but their values are
    unknown, and the curve is not exactly flat along them: away from the optimum the determined combinations
    compensate for them. ``samples`` parameter sets are drawn with ``ln θ`` moved along the undetermined
    directions by ``N(0, spread²)`` per parameter (projected out of the determined subspace), and the determined
    directions are refitted to each by up to ``steps`` Gauss-Newton steps (the first on ``jacobian``, the next
    ones on its Broyden updates; a step that does not lower the residuals ends the refit); the covariance of
    those refitted shifts is returned. The curve is not linear along the undetermined directions, so one step
    recovers only part of the compensation: use several.

    Parameters
    ----------
    residuals : callable
        ``{name: value}`` → residual vector ``[n]`` (the one the fit minimised).
    posterior : Posterior
        At the optimum; its ``basis`` spans the determined directions.
    jacobian : ndarray, shape (n, p)
        ``∂r/∂ ln θ`` at the optimum (columns in ``posterior.names`` order).
    base : ndarray, shape (n,)
        The residuals at the optimum.
    spread : float
        Prior standard deviation of each undetermined ``ln θ`` around its fitted value (0.5: a factor 2.3 either
        way for 90 %).
    samples : int
        Simulations (the cost).
    seed : int
        Seed of the draws.
    bounds : mapping, optional
        Name → (lo, hi): draws are clipped inside.
    steps : int
        Gauss-Newton steps of each refit (one simulation each).

    Returns
    -------
    ndarray, shape (p, p)
        Covariance of ``ln θ`` within the determined subspace (zeros when nothing is determined, ``spread`` is 0
        or no draw could be simulated).

    Examples
    --------
    A curve that depends on ``a·b^0.3`` exactly: ``a`` compensates for the undetermined ``b``.

    >>> t = np.linspace(1, 2, 20)
    >>> f = lambda v: t * np.log(v["a"] * v["b"] ** 0.3)
    >>> J = log_jacobian(f, {"a": 1.0, "b": 1.0}, ["a", "b"], central=True)
    >>> post = Posterior(["a", "b"], {"a": 1.0, "b": 1.0}, np.array([[1.0], [0.0]]), np.array([0.01]), 0.1)
    >>> cov = nuisance_covariance(f, post, J, f(post.values), spread=0.5, samples=400)
    >>> round(float(np.sqrt(cov[0, 0])), 2)  # ≈ 0.3 × 0.5
    0.15
    """
    p = len(posterior.names)
    out = np.zeros((p, p))
    if posterior.rank == 0 or spread <= 0 or samples <= 0:
        return out
    basis = posterior.basis
    jb = np.nan_to_num(np.asarray(jacobian, dtype=np.float64)) @ basis
    if not bool(np.isfinite(jb).all()) or float(np.abs(jb).max()) == 0.0:
        return out
    free = np.eye(p) - basis @ basis.T
    rng = np.random.default_rng(seed)
    lo = np.array([math.log((bounds or {}).get(n, (0.0, math.inf))[0] or 1e-300) for n in posterior.names])
    hi = np.array([math.log((bounds or {}).get(n, (0.0, math.inf))[1]) for n in posterior.names])
    x0 = np.array([math.log(posterior.values[n]) for n in posterior.names])
    shifts = []

    def at(x: np.ndarray) -> dict[str, float]:
        x = np.clip(x, lo, hi)
        return {**posterior.values, **{n: float(math.exp(x[j])) for j, n in enumerate(posterior.names)}}

    for _ in range(samples):
        du = np.clip(x0 + free @ (spread * rng.standard_normal(p)), lo, hi) - x0
        r = _evaluate(residuals, at(x0 + du))
        if r is None:
            continue
        # The undetermined move changes the curve by r - base (its linear part along the determined directions
        # included); the determined directions absorb what they can of it: the first step measures the change
        # from the optimum's curve, the later ones refit to the data from where the previous step arrived.
        dd = np.linalg.lstsq(jb, -(r - base), rcond=None)[0]
        step, jk = dd, jb.copy()
        for _ in range(steps - 1):
            r_new = _evaluate(residuals, at(x0 + du + basis @ dd))
            if r_new is None or float(r_new @ r_new) >= float(r @ r):
                break
            # Broyden update of the determined columns along the step just taken, then the next step.
            if float(step @ step) > 0:
                jk = jk + np.outer(r_new - r - jk @ step, step) / float(step @ step)
            r = r_new
            step = np.linalg.lstsq(jk, -r, rcond=None)[0]
            dd = dd + step
        shifts.append(basis @ dd)
    if not shifts:
        return out
    d = np.array(shifts)
    return d.T @ d / len(shifts)


@dataclass
class Refinement:
    """The result of :func:`refine`: the values, the residuals and Jacobian there, and the RSS per iteration."""

    values: dict[str, float]
    residuals: np.ndarray
    jacobian: np.ndarray
    rss: list[float]
    evaluations: int


def refine(
    residuals: Residuals,
    values: Mapping[str, float],
    names: Sequence[str],
    *,
    iterations: int = 5,
    step: float = 0.05,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    max_move: float = 0.5,
) -> Refinement:
    """Levenberg-Marquardt in ``ln θ`` (Broyden updates of the Jacobian between full finite-difference ones),
    moving only along directions the residuals are sensitive to; each accepted step lowers ``|r|²``.

    Parameters
    ----------
    residuals : callable
        ``{name: value}`` → residual vector.
    values : mapping
        Start (every parameter ``residuals`` needs).
    names : sequence of str
        The parameters to refine.
    iterations : int
        Accepted or rejected steps to try.
    bounds : mapping, optional
        Name → (lo, hi): each parameter is kept inside.
    max_move : float
        Largest change of any ``ln θ`` in one step.

    Returns
    -------
    Refinement
        With the Jacobian recomputed by finite differences at the returned values (NaN columns for parameters
        whose perturbation failed).

    Examples
    --------
    >>> f = lambda v: np.log(v["a"] / v["b"]) * np.linspace(1, 2, 10) - np.log(3.0) * np.linspace(1, 2, 10)
    >>> out = refine(f, {"a": 1.0, "b": 1.0}, ["a", "b"], iterations=4)
    >>> round(out.values["a"] / out.values["b"], 3)
    3.0
    """
    names = list(names)
    cur = dict(values)
    try:
        r = np.asarray(residuals(cur), dtype=np.float64)
    except (ArithmeticError, ValueError, RuntimeError) as exc:
        raise NeuradiffError(f"the simulation at the fitted parameters failed ({exc})") from None
    if not bool(np.isfinite(r).all()):
        raise NeuradiffError("the residuals at the fitted parameters are not finite")
    evals = 1
    J = log_jacobian(residuals, cur, names, step=step, base=r)
    evals += len(names)
    active = np.isfinite(J).all(axis=0)
    norms = np.where(active, np.linalg.norm(np.nan_to_num(J), axis=0), 0.0)
    active &= norms > 1e-6 * max(float(norms.max()) if norms.size else 0.0, 1e-300)
    rss = [float(r @ r)]
    damping = 1e-3
    lo = np.array([math.log((bounds or {}).get(n, (0.0, math.inf))[0] or 1e-300) for n in names])
    hi = np.array([math.log((bounds or {}).get(n, (0.0, math.inf))[1]) for n in names])
    for _ in range(iterations):
        if not active.any():
            break
        Ja = J[:, active]
        u, s, vt = np.linalg.svd(Ja, full_matrices=False)
        keep = s > 1e-3 * s[0]
        mu = damping * s[0] ** 2
        coef = s[keep] / (s[keep] ** 2 + mu)
        delta_a = -(vt[keep].T * coef) @ (u[:, keep].T @ r)
        delta = np.zeros(len(names))
        delta[active] = delta_a
        biggest = float(np.abs(delta).max())
        if biggest > max_move:
            delta *= max_move / biggest
        x = np.array([math.log(cur[n]) for n in names])
        x_new = np.clip(x + delta, lo, hi)
        delta = x_new - x
        trial = {**cur, **{n: float(math.exp(v)) for n, v in zip(names, x_new)}}
        r_new = _evaluate(residuals, trial)
        evals += 1
        if r_new is not None and float(r_new @ r_new) < rss[-1]:
            # Broyden rank-one update of the Jacobian on the active columns.
            da = delta[active]
            if float(da @ da) > 0:
                J[:, active] = Ja + np.outer(r_new - r - Ja @ da, da) / float(da @ da)
            cur, r = trial, r_new
            rss.append(float(r @ r))
            damping = max(damping / 3, 1e-6)
        else:
            damping *= 8
    J_final = J.copy()
    fresh = log_jacobian(residuals, cur, [n for n, a in zip(names, active) if a], step=step, base=r)
    evals += int(active.sum())
    J_final[:, active] = fresh
    return Refinement(cur, r, J_final, rss, evals)


@dataclass
class ForecastBand:
    """A forecast's void area and mean void radius per frame with their 90 % band.

    Attributes
    ----------
    frames : ndarray, int
    area, area_lo, area_hi : ndarray
        Total void area (px², or nm² when ``nm_per_px`` was given) and its 90 % band.
    radius, radius_lo, radius_hi : ndarray
        Mean equivalent radius of the voids (px or nm) and its 90 % band.
    unit_length : str
        ``"px"`` or ``"nm"``.
    """

    frames: np.ndarray
    area: np.ndarray
    area_lo: np.ndarray
    area_hi: np.ndarray
    radius: np.ndarray
    radius_lo: np.ndarray
    radius_hi: np.ndarray
    unit_length: str = "px"

    def contains(self, area: np.ndarray) -> np.ndarray:
        """Per frame: is ``area`` inside the band?"""
        return (area >= self.area_lo) & (area <= self.area_hi)


def void_sizes(eta: np.ndarray, min_px: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Total void area (px) and mean equivalent radius (px) of ``eta ≥ 0.5`` in each frame of ``[T, H, W]``
    (regions smaller than ``min_px`` px are ignored for the radius).

    Examples
    --------
    >>> eta = np.zeros((1, 20, 20)); eta[0, 2:6, 2:6] = 1; eta[0, 10:14, 10:14] = 1
    >>> a, r = void_sizes(eta); a.tolist(), round(float(r[0]), 3)
    ([32.0], 2.257)
    """
    areas, radii = [], []
    for frame in eta >= 0.5:
        lab = np.asarray(label(frame, connectivity=1))
        sizes = np.bincount(lab.ravel())[1:]
        sizes = sizes[sizes >= min_px]
        areas.append(float(frame.sum()))
        radii.append(float(np.sqrt(sizes / math.pi).mean()) if sizes.size else 0.0)
    return np.array(areas), np.array(radii)


def _deviation(
    run: Callable[[Mapping[str, float]], np.ndarray],
    posterior: Posterior,
    k: int,
    centre: tuple[np.ndarray, np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """Area and radius change per standard deviation along determined direction ``k``: central differences at
    ±1 standard deviation, or at ±1/2, ±1/4, ±1/8 of one (one-sided when only one side can be simulated) where
    the simulation fails further out (a stiff region of the parameters)."""
    step = posterior.basis[:, k] * posterior.log_std[k]
    for scale in (1.0, 0.5, 0.25, 0.125):
        sides = []
        for sign in (1.0, -1.0):
            try:
                sides.append(void_sizes(run(posterior._at(sign * scale * step))))
            except (ArithmeticError, ValueError, RuntimeError, NeuradiffError):
                sides.append(None)
        up, dn = sides
        if up is not None and dn is not None:
            return (up[0] - dn[0]) / (2 * scale), (up[1] - dn[1]) / (2 * scale)
        one, sign = (up, 1.0) if up is not None else (dn, -1.0)
        if one is not None:
            return sign * (one[0] - centre[0]) / scale, sign * (one[1] - centre[1]) / scale
    raise NeuradiffError(
        "the forecast band cannot be computed: the simulation fails within 1/8 of a standard deviation of the "
        "fitted parameters"
    )


def forecast_band(
    run: Callable[[Mapping[str, float]], np.ndarray],
    posterior: Posterior,
    frames: np.ndarray,
    *,
    nm_per_px: float | None = None,
) -> ForecastBand:
    """The 90 % band of a forecast's void area and mean radius (module docstring).

    Parameters
    ----------
    run : callable
        ``{name: value}`` → forecast eta ``[n + 1, H, W]``.
    posterior : Posterior
    frames : ndarray
        The frame index of each forecast frame.
    nm_per_px : float, optional
        Report in nm² and nm instead of px² and px.

    Examples
    --------
    >>> def run(v):  # a disk whose radius is the parameter, at two frames
    ...     yy, xx = np.mgrid[:32, :32]
    ...     disk = ((yy - 16) ** 2 + (xx - 16) ** 2 <= v["r"] ** 2).astype(float)
    ...     return np.stack([disk, disk])
    >>> post = Posterior(["r"], {"r": 8.0}, np.ones((1, 1)), np.array([0.1]), 0.0)
    >>> band = forecast_band(run, post, np.arange(2))
    >>> bool(band.area_lo[0] < band.area[0] < band.area_hi[0])
    True

    Where the simulation fails at one standard deviation (here above r = 8.5), closer points stand in for it:

    >>> def stiff(v):
    ...     if v["r"] > 8.5:
    ...         raise RuntimeError("too stiff")
    ...     return run(v)
    >>> bool(forecast_band(stiff, post, np.arange(2)).area_hi[0] > band.area[0])
    True
    """
    centre_eta = run(posterior.values)
    area, radius = void_sizes(centre_eta)
    var_a = np.zeros_like(area)
    var_r = np.zeros_like(radius)
    for k in range(posterior.rank):
        dev_a, dev_r = _deviation(run, posterior, k, (area, radius))
        var_a += dev_a**2
        var_r += dev_r**2
    sigma = posterior.sigma if math.isfinite(posterior.sigma) else 0.0
    n_voids = np.maximum(np.where(radius > 0, area / np.maximum(math.pi * radius**2, 1e-12), 1.0), 1.0)
    sigma_r = sigma / np.maximum(2 * math.pi * np.maximum(radius, 0.5) * n_voids, 1e-12)
    half_a = Z90 * np.sqrt(var_a + sigma**2)
    half_r = Z90 * np.sqrt(var_r + sigma_r**2)
    scale = 1.0 if nm_per_px is None else float(nm_per_px)
    return ForecastBand(
        np.asarray(frames),
        area * scale**2,
        np.maximum(area - half_a, 0.0) * scale**2,
        (area + half_a) * scale**2,
        radius * scale,
        np.maximum(radius - half_r, 0.0) * scale,
        (radius + half_r) * scale,
        "px" if nm_per_px is None else "nm",
    )
