"""Where a forecast starts: the recognition net's latent c_v, c_i against their matrix values, on a multi-void
video and an unseen one.

Makes the paper suite's two multi-void videos (``neuradiff evaluate --suite paper`` with
``{"train_scenario": "multi-void"}``: training video seed ``S``, unseen video seed ``S + 1``), fits NeuraDiff on the
first with seeds ``S, S + 1, S + 2`` (the suite's fits, without their calibration: ``refine_iters`` 0), and then
calibrates each fit twice on the training video's void-area curve (:func:`neuradiff.methods.neuradiff.calibrate`,
the fit's last step), once for each ``start_fields``:

- ``recognised`` (the baseline: every version before this setting) — the calibration and the forecasts start from
  the net's c_v, c_i;
- ``matrix`` (the default) — at frame 0, from c_v = 1 in the recognised voids and ``c_v_matrix`` elsewhere,
  c_i = ``c_i_matrix``; at a later frame, from the c_v, c_i the physics reaches from frame 0 with the fit's
  parameters, carried onto the voids recognised there (:func:`neuradiff.physics.carried_state`).

Every calibrated model forecasts both videos from frame 0 (the annotation of frame 0 overlaid, as the suite does)
and from a later frame ``--later`` (no annotation), to the last frame; the largest relative void-area error
against the truth is printed per fit, with three references with the true parameters: from the true fields of that
frame (what a forecast could reach), from the default start, and from the matrix values at every frame.

Run:  python benchmarks/bench_start_fields.py [--seed 1] [--later 20]
Writes benchmarks/results/start_fields.json (``--out`` to change). About 2.5 min on one core.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, print_environment, single_thread, table, write_json

FIELDS = ("recognised", "matrix")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1, help="training video's seed (the unseen one is seed + 1)")
    ap.add_argument("--later", type=int, default=20, help="the later frame forecasts also start from")
    ap.add_argument("--fits", type=int, default=3)
    ap.add_argument("--out", default="start_fields.json")
    args = ap.parse_args()
    single_thread()
    import numpy as np
    import torch

    from neuradiff.evaluation.jobs import training_data
    from neuradiff.evaluation.scores import first_annotation
    from neuradiff.evaluation.truth import forecast_scores
    from neuradiff.methods.neuradiff import calibrate, fit_neuradiff
    from neuradiff.physics import VoidParameters, matrix_state
    from neuradiff.synth.datasets import dataset_config, make_dataset
    from neuradiff.training import FitConfig

    torch.set_num_threads(1)
    env = environment()
    print_environment(env)
    t0 = time.perf_counter()
    videos = {
        "training": make_dataset(dataset_config("multi-void", seed=args.seed)),
        "unseen": make_dataset(dataset_config("multi-void", seed=args.seed + 1)),
    }
    data = training_data(videos["training"])
    starts = (0, args.later)
    truth = videos["training"].truth
    true_params = VoidParameters.from_mapping(
        dict(zip([str(n) for n in truth["param_names"]], truth["param_values"].tolist()))
    )

    def errors(model, *, params=None, state_of=None) -> dict[str, float]:
        """Largest relative area error of the forecast of each video from each start frame."""
        out = {}
        for name, ds in videos.items():
            frames = ds.video.astype(np.float32)
            for start in starts:
                ann = first_annotation(ds) if start == 0 else None
                m = model if params is None else model.with_parameters(params)
                if state_of is not None:
                    state = state_of(ds, start, m.start_state(frames, start, ann))
                    m = _FixedStart(m, state)
                s, _ = forecast_scores(m, frames, ds.truth["eta"], start=start, annotation=ann)
                out[f"{name} from {start}"] = float(s["max_relative_area_error"])
        return out

    rows, records = [], []
    for k in range(args.fits):
        seed = args.seed + k
        cfg = FitConfig(seed=seed)
        t = time.perf_counter()
        raw = fit_neuradiff(data, replace(cfg, refine_iters=0, uncertainty=False)).model
        fit_s = time.perf_counter() - t
        # What the net reads as c_v inside the voids of each video's frame 0 (true: 1).
        c_v_voids = {}
        for name, ds in videos.items():
            net_state = replace(raw, info={**raw.info, "start_fields": "recognised"}).start_state(
                ds.video.astype(np.float32), 0, first_annotation(ds)
            )
            c_v_voids[name] = float(net_state[0, 0][net_state[0, 2] >= 0.5].mean())
        print(
            f"fit seed {seed}: the net's c_v inside the voids of frame 0: "
            + ", ".join(f"{k} {v:.3f}" for k, v in c_v_voids.items())
        )
        for fields in FIELDS:
            model = calibrate(replace(raw, info={**raw.info, "start_fields": fields}), data, cfg)
            err = errors(model)
            p = model.params
            rec = {
                "fit_seed": seed,
                "start_fields": fields,
                "fit_seconds": fit_s,
                "net_c_v_in_voids_frame0": c_v_voids,
                "errors": err,
                "parameters": p.as_floats(),
                "E_v/kBT": p.E_v / p.kBT,
            }
            records.append(rec)
            rows.append({"fit": f"seed {seed}", "start": fields, **err, "E_v/kBT": p.E_v / p.kBT})
        if k == 0:
            true_fields = errors(
                raw,
                params=true_params,
                state_of=lambda ds, start, _: torch.from_numpy(
                    np.stack([ds.truth[f][start] for f in ("c_v", "c_i", "eta")])[None].astype(np.float32)
                ),
            )
            matrix = errors(raw, params=true_params, state_of=lambda ds, start, s: matrix_state(s[:, 2]))
            carried = errors(raw, params=true_params)  # the default start: matrix at frame 0, carried from there
            rows.append({"fit": "true parameters", "start": "true fields", **true_fields})
            rows.append({"fit": "true parameters", "start": "matrix, carried", **carried})
            rows.append({"fit": "true parameters", "start": "matrix at every frame", **matrix})
            references = {
                "true_fields": true_fields,
                "matrix_carried_true_parameters": carried,
                "matrix_every_frame_true_parameters": matrix,
            }
    cols = [("fit", "fit", ""), ("start", "start fields", "")]
    cols += [(f"{v} from {s}", f"{v} from {s}", ".3f") for v in videos for s in starts]
    cols += [("E_v/kBT", "E_v/kBT", ".3f")]
    print(table(rows, cols))
    summary = {}
    for fields in FIELDS:
        mine = [r["errors"] for r in records if r["start_fields"] == fields]
        summary[fields] = {key: [m[key] for m in mine] for key in mine[0]}
    for key in summary["matrix"]:
        worst = {f: max(summary[f][key]) for f in FIELDS}
        print(
            f"{key}: worst fit {100 * worst['matrix']:.1f} % (matrix) against {100 * worst['recognised']:.1f} % "
            f"(recognised), ratio {worst['matrix'] / worst['recognised']:.2f}"
        )
    path = write_json(
        args.out,
        {
            "environment": env,
            "settings": {"seed": args.seed, "later": args.later, "fits": args.fits},
            "wall_seconds": time.perf_counter() - t0,
            "fits": records,
            "references": references,
            "worst_fit": summary,
        },
    )
    print(f"wrote {path}")


class _FixedStart:
    """A fitted model whose forecasts start from a given state (the references)."""

    def __init__(self, model, state) -> None:
        self.model, self.state = model, state

    def forecast(self, frames, start, n_frames, *, annotation=None, **kw):
        from neuradiff.methods.forecast import simulate_forward

        return simulate_forward(self.model.simulator, self.state, self.model.params, n_frames, start=start)


if __name__ == "__main__":
    main()
