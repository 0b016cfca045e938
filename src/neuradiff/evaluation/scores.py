"""Scores of the suite's trained methods: tracking on held-out frames, forecasts from frame 0, transfer to an
unseen multi-void video, and the learned parameters with an identifiability check.

Every method is scored through the :class:`~neuradiff.methods.FittedMethod` interface: the trackers are the
methods that can track, the forecasters the ones that can forecast (plus NeuraDiff with the initial guess of the
parameters, the in-run baseline of what learning bought).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from skimage.measure import label

from neuradiff.core.labels import has_annotation
from neuradiff.evaluation.truth import recording_drift, score_forecast, tracking_scores
from neuradiff.measure.drift import shift_frames
from neuradiff.measure.metrics import iou
from neuradiff.methods import FitResult, FittedMethod, NeuraDiffModel, simulate_forward
from neuradiff.physics import VoidParameters
from neuradiff.synth.datasets import Dataset, time_per_frame
from neuradiff.synth.render import shift_like
from neuradiff.training import FitConfig

#: Fits of the suite: method name → one result, or a list of results (one per seed) for the seeded methods.
Fits = dict[str, Any]


def mean_radius_px(masks: np.ndarray) -> np.ndarray:
    """Mean equivalent radius sqrt(area/π) of the voids (connected components) of each mask ``[T, H, W]``;
    NaN for a frame without voids."""
    out = np.full(masks.shape[0], np.nan)
    for k, m in enumerate(masks):
        lab = np.asarray(label(m))
        areas = np.bincount(lab.ravel())[1:]
        areas = areas[areas > 0]
        if areas.size:
            out[k] = float(np.sqrt(areas / np.pi).mean())
    return out


def _curves(eta: np.ndarray, nm_per_px: float) -> dict[str, list[float]]:
    masks = eta >= 0.5
    return {
        "area_nm2": (masks.sum(axis=(1, 2)) * nm_per_px**2).astype(float).tolist(),
        "mean_radius_nm": (mean_radius_px(masks) * nm_per_px).tolist(),
    }


def first_annotation(ds: Dataset) -> np.ndarray | None:
    """The annotation of frame 0 when it has one (forecasts start from it)."""
    a = np.asarray(ds.annotations[0])
    return a if has_annotation(a) else None


def _entries(fit: FitResult | list[FitResult]) -> list[FitResult]:
    return fit if isinstance(fit, list) else [fit]


def trackers(fits: Fits) -> dict[str, FittedMethod]:
    """The methods that track (the first seed of seeded methods), in the order of ``fits``."""
    return {name: _entries(fit)[0].model for name, fit in fits.items() if _entries(fit)[0].model.can_track}


def forecasters(fits: Fits, fit_cfg: FitConfig) -> dict[str, FittedMethod]:
    """Every forecasting method (each seed of the surrogate as ``surrogate``, ``surrogate_seed<s>``; each NeuraDiff
    fit as ``neuradiff``, ``neuradiff_seed<s>``) and ``initial_guess``: the first NeuraDiff fit with the starting
    parameters."""
    out: dict[str, FittedMethod] = {}
    for name, fit in fits.items():
        entries = _entries(fit)
        if not entries[0].model.can_forecast:
            continue
        if name in ("surrogate", "neuradiff"):  # every seed is reported: the spread over seeds is part of the result
            for k, entry in enumerate(entries):
                seed = getattr(entry.model, "seed", fit_cfg.seed + k)  # NeuraDiff fits: seeds seed, seed + 1, ...
                out[name if k == 0 else f"{name}_seed{seed}"] = entry.model
        else:
            out[name] = entries[0].model
    first = _entries(fits["neuradiff"])[0].model
    out["initial_guess"] = first.with_parameters(fit_cfg.initial_parameters())
    return out


FORECAST_ORDER = ("neuradiff", "residual", "initial_guess", "physics_only", "surrogate")


def forecasts(fits: Fits, ds: Dataset, fit_cfg: FitConfig) -> dict[str, np.ndarray]:
    """eta ``[T, H, W]`` of every method's forecast of ``ds`` from frame 0 (in frame-0 coordinates)."""
    frames = ds.video.astype(np.float32)
    n = frames.shape[0] - 1
    ann0 = first_annotation(ds)
    methods = forecasters(fits, fit_cfg)
    order = [m for m in FORECAST_ORDER if m in methods] + [m for m in methods if m not in FORECAST_ORDER]
    return {
        name: methods[name].forecast(frames, 0, n, annotation=ann0, time_per_frame=time_per_frame(ds.metadata)).eta
        for name in order
    }


def registered_recognition(model: FittedMethod, ds: Dataset, drift: np.ndarray) -> np.ndarray:
    """eta ``[T, H, W]`` that ``model`` recognises in the video moved back onto its first frame by ``drift`` (what
    ``neuradiff track --register`` gives): the reference a forecast can be scored against on a real recording."""
    frames = shift_frames(ds.video.astype(np.float32), -np.asarray(drift), order=3)
    return model.recognise(frames, eta_only=True)


def against_recognition(eta: np.ndarray, recognised: np.ndarray) -> dict[str, float]:
    """A forecast ``[T, H, W]`` (frame-0 coordinates) against the drift-corrected recognition ``[T, H, W]``:
    the maximum and mean relative void-area difference and the IoU at the last frame."""
    area_f = (eta >= 0.5).sum(axis=(1, 2)).astype(float)
    area_r = (recognised >= 0.5).sum(axis=(1, 2)).astype(float)
    rel = np.abs(area_f - area_r) / np.maximum(area_r, 1.0)
    return {
        "max_relative_area_error": float(rel.max()),
        "mean_relative_area_error": float(rel.mean()),
        "last_frame_iou": iou(eta[-1] >= 0.5, recognised[-1] >= 0.5),
    }


def _forecast_block(
    fc: dict[str, np.ndarray], ds: Dataset, drift: np.ndarray, recognised: np.ndarray
) -> dict[str, Any]:
    """Every forecast scored against the truth after moving it with the ``drift`` estimated from the video (the
    truth's drift only as reference figures) and against the drift-corrected ``recognised`` eta."""
    nm = float(ds.metadata["calibration"]["nm_per_px"])
    truth = ds.truth["eta"]
    truth_drift = ds.truth.get("drift_px")
    block = {
        "time_s": ds.truth["time_s"].astype(float).tolist(),
        "truth": _curves(truth, nm),
        "drift": {"source": "estimated from the video by phase correlation (as neuradiff track --register)"},
        "methods": {},
    }
    if truth_drift is not None:
        err = (drift - drift[0]) - (truth_drift - truth_drift[0])
        block["drift"]["rms_error_px"] = float(np.sqrt((err**2).sum(axis=1).mean()))
    for name, eta in fc.items():
        s = score_forecast(eta, truth, drift_px=drift, truth_drift_px=truth_drift)
        moved = shift_like(eta.astype(np.float32), drift - drift[0])
        block["methods"][name] = {
            **{k: v for k, v in s.items() if not k.startswith("area_")},
            "against_recognition": against_recognition(eta, recognised),
            **_curves(moved, nm),
        }
    return block


def _tracking_block(fits: Fits, ds: Dataset, frames_idx: np.ndarray) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    frames = ds.video.astype(np.float32)
    etas, block = {}, {}
    for name, model in trackers(fits).items():
        etas[name] = model.recognise(frames, eta_only=True)
        rep = tracking_scores(etas[name], ds.truth["eta"], frames_idx)
        block[name] = {k: v for k, v in rep.items() if k != "per_frame"}
    return block, etas


def sensitivity(fits: Fits, ds: Dataset, fit_cfg: FitConfig, step: float) -> dict[str, Any]:
    """Local sensitivity of the forecast void-area curve to each learned parameter at NeuraDiff's optimum:
    J[t, k] = ∂ ln A(t) / ∂ ln θ_k by central differences (θ_k × (1 ± step)), its RMS over frames per
    parameter, and the eigenvalues of JᵀJ (how many parameter combinations the curve pins down)."""
    frames = ds.video.astype(np.float32)
    n = frames.shape[0] - 1
    fit = _entries(fits["neuradiff"])[0]
    model: NeuraDiffModel = fit.model
    base = model.params
    names = list(model.info["learned"])
    simulator = model.simulator.for_frames(time_per_frame(ds.metadata))
    # One recognised start state, simulated with perturbed parameters.
    state = model.start_state(frames, 0, first_annotation(ds))

    def area(p: VoidParameters) -> np.ndarray:
        eta = simulate_forward(simulator, state, p, n).eta
        return np.maximum((eta >= 0.5).sum(axis=(1, 2)).astype(float), 1.0)

    a0 = area(base)
    values = base.as_floats()
    jac = np.zeros((n, len(names)))
    for k, name in enumerate(names):
        up = area(VoidParameters.from_mapping({**values, name: values[name] * (1 + step)}))
        down = area(VoidParameters.from_mapping({**values, name: values[name] * (1 - step)}))
        jac[:, k] = (np.log(up[1:]) - np.log(down[1:])) / (np.log(1 + step) - np.log(1 - step))
    eig, vec = np.linalg.eigh(jac.T @ jac)
    order = np.argsort(eig)[::-1]
    eig, vec = np.clip(eig[order], 0.0, None), vec[:, order]
    vec = vec * np.where(vec[np.abs(vec).argmax(axis=0), np.arange(vec.shape[1])] < 0, -1.0, 1.0)
    rms = np.sqrt((jac**2).mean(axis=0))
    return {
        "names": names,
        "rms_log_sensitivity": dict(zip(names, rms.tolist())),
        "fisher_eigenvalues": eig.tolist(),
        "fisher_eigenvectors": vec.T.tolist(),
        "step": step,
        "base_area_px": a0.tolist(),
    }


def _combination(names: list[str], vector: list[float]) -> str:
    terms = sorted(((v, n) for v, n in zip(vector, names) if abs(v) >= 0.1), key=lambda t: -abs(t[0]))
    text = " ".join(f"{'−' if v < 0 else '+'} {abs(v):.2f}·ln {n}" for v, n in terms).lstrip("+ ")
    return text if not text.startswith("−") else "−" + text[1:].lstrip()


def parameter_block(fits: Fits, ds: Dataset, fit_cfg: FitConfig, seeds: list[int], step: float) -> dict[str, Any]:
    """Learned vs true values over the NeuraDiff seeds (mean, spread), the baselines' values and the
    identifiability statement."""
    true = dict(zip([str(n) for n in ds.truth["param_names"]], ds.truth["param_values"].tolist()))
    names = list(fits["neuradiff"][0].model.info["learned"])
    seed_values = [{n: f.model.params.as_floats()[n] for n in names} for f in fits["neuradiff"]]
    spread = {}
    for n in names:
        v = np.array([s[n] for s in seed_values])
        spread[n] = {
            "mean": float(v.mean()),
            "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "cv": float(v.std(ddof=1) / v.mean()) if v.size > 1 else 0.0,
            "mean_relative_error": float(np.mean(np.abs(v - true[n]) / abs(true[n]))),
        }
    sens = sensitivity(fits, ds, fit_cfg, step)
    eig = np.asarray(sens["fisher_eigenvalues"])
    vec = np.asarray(sens["fisher_eigenvectors"])  # [combination, parameter]
    n_combos = int((eig > 0.01 * eig[0]).sum()) if eig.size and eig[0] > 0 else 0
    loading = (
        dict(zip(names, np.sqrt((vec[:n_combos] ** 2).sum(axis=0)).tolist())) if n_combos else dict.fromkeys(names, 0.0)
    )
    constrained = [n for n in names if loading[n] >= 0.3]
    verdict = {}
    for n in names:
        if n not in constrained:
            verdict[n] = "not constrained"
        elif len(constrained) > n_combos:
            verdict[n] = "jointly constrained"
        else:
            verdict[n] = "pinned down" if spread[n]["cv"] <= 0.2 else "weakly constrained"
    free = [n for n in names if verdict[n] == "not constrained"]
    combos = [_combination(names, vec[j].tolist()) for j in range(n_combos)]
    statement = (
        f"The forecast void-area curve of this video (each parameter changed by ±{100 * step:.0f} % at the first "
        f"NeuraDiff fit) determines about {n_combos} combination(s) of the {len(names)} learned parameters "
        f"(eigenvalues of JᵀJ above 1 % of the largest, J = ∂ ln area / ∂ ln θ)"
        + (f"; the best determined is {combos[0]}" if combos else "")
        + ". "
    )
    top = [n for _, n in sorted(((abs(v), n) for v, n in zip(vec[0], names)), reverse=True)[:2]] if combos else []
    if set(top) == {"E_v", "kBT"} and vec[0][names.index("E_v")] * vec[0][names.index("kBT")] < 0:
        statement += (
            "That is close to the ratio E_v/kBT, which sets the thermal vacancy concentration "
            "exp(−E_v/kBT): the video pins that ratio down, not E_v and kBT separately. "
        )
    if constrained:
        label = {
            "jointly constrained": "only jointly",
            "pinned down": "individually",
            "weakly constrained": "individually, but the seeds disagree by more than 20 %",
        }
        statement += (
            "Constrained "
            + "; ".join(
                f"{n} ({label[verdict[n]]}; spread across {len(seeds)} seeds {100 * spread[n]['cv']:.0f} %, "
                f"mean error against the truth {100 * spread[n]['mean_relative_error']:.0f} %)"
                for n in constrained
            )
            + ". "
        )
    if free:
        statement += (
            f"Not constrained by the area curve (their learned values come from the starting guess and the "
            f"other loss terms, not from the void's size): {', '.join(free)}. "
        )
    statement += (
        "Agreement across seeds is not accuracy: every fit starts from the same guess and sees the same "
        "video, so a shared bias shows as a small spread."
    )
    return {
        "names": names,
        "true": {n: true[n] for n in names},
        "initial": {n: fit_cfg.initial_parameters().as_floats()[n] for n in names},
        "seeds": seeds,
        "neuradiff_seeds": seed_values,
        "spread": spread,
        "physics_only": {n: fits["physics_only"].model.params.as_floats()[n] for n in names},
        "residual": {n: fits["residual"].model.params.as_floats()[n] for n in names},
        "sensitivity": sens,
        "identifiable_combinations": n_combos,
        "combinations": combos,
        "calibration": [
            None if getattr(f.model, "identifiable", None) is None else f.model.identifiable.to_dict()
            for f in fits["neuradiff"]
        ],
        "loading": loading,
        "verdict": verdict,
        "statement": statement,
    }


def score_suite(
    fits: Fits,
    train_ds: Dataset,
    transfer_ds: Dataset,
    fit_cfg: FitConfig,
    *,
    seeds: list[int],
    train_frames: np.ndarray,
    sensitivity_step: float,
) -> dict[str, Any]:
    """Everything the report shows: scores (JSON-ready) and the arrays of its figures (``arrays``)."""
    t_len = train_ds.video.shape[0]
    held = np.setdiff1d(np.arange(t_len), train_frames)
    tracking, track_eta = _tracking_block(fits, train_ds, held)
    fc = forecasts(fits, train_ds, fit_cfg)
    transfer_tracking, transfer_eta = _tracking_block(fits, transfer_ds, np.arange(transfer_ds.video.shape[0]))
    transfer_fc = forecasts(fits, transfer_ds, fit_cfg)
    tracker = trackers(fits)["neuradiff"]
    drift = {"train": recording_drift(train_ds.video), "transfer": recording_drift(transfer_ds.video)}
    recognised = {
        "train": registered_recognition(tracker, train_ds, drift["train"]),
        "transfer": registered_recognition(tracker, transfer_ds, drift["transfer"]),
    }
    return {
        "held_out_frames": held.tolist(),
        "tracking": tracking,
        "forecast": _forecast_block(fc, train_ds, drift["train"], recognised["train"]),
        "transfer": {
            "tracking": transfer_tracking,
            "forecast": _forecast_block(transfer_fc, transfer_ds, drift["transfer"], recognised["transfer"]),
        },
        "parameters": parameter_block(fits, train_ds, fit_cfg, seeds, sensitivity_step),
        "arrays": {
            "train": {"tracking": track_eta["neuradiff"], "forecast": fc, "drift_px": drift["train"]},
            "transfer": {"tracking": transfer_eta["neuradiff"], "forecast": transfer_fc, "drift_px": drift["transfer"]},
        },
    }
