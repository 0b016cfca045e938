"""A standing fuzz campaign: generated malformed videos, annotations, calibrations, settings and command lines
must each give the contract for bad input — exit code 2, one line on stderr, no traceback, no hang, nothing
written or left behind. The fast test tries 20 cases; the slow campaign tries 250."""

from __future__ import annotations

import json
import shutil
import struct
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from neuradiff.cli import app

runner = CliRunner()
#: A case taking longer than this counts as a hang.
HANG_S = 5.0

# --------------------------------------------------------------------------- valid inputs the cases start from


def _valid_inputs(folder: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    video = folder / "video.tif"
    tifffile.imwrite(
        video,
        (rng.random((10, 24, 24)) * 255).astype(np.uint8),
        imagej=True,
        resolution=(1.0, 1.0),
        metadata={"axes": "TYX", "unit": "nm", "finterval": 1.0},
    )
    masks = np.full((10, 24, 24), 255, np.uint8)
    masks[::3] = 0
    masks[::3, 8:16, 8:16] = 1
    ann = folder / "masks.tif"
    tifffile.imwrite(ann, masks)
    return {"video": video, "masks": ann}


# --------------------------------------------------------------------------- malformed inputs

SUFFIXES = [".tif", ".png", ".mrc", ".emd", ".dm4", ".ser", ".jpg", ".xyz", ""]


@st.composite
def bad_videos(draw):
    """(kind, writer): writer(path_without_suffix) -> the bad video's path."""
    kind = draw(st.sampled_from(["garbage", "truncated", "non-finite", "tiny", "mrc", "empty", "folder"]))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    if kind == "garbage":
        suffix = draw(st.sampled_from(SUFFIXES))
        data = draw(st.binary(min_size=1, max_size=600))

        def write(base: Path) -> Path:
            path = base.with_suffix(suffix) if suffix else base
            path.write_bytes(data)
            return path

    elif kind == "truncated":
        frames, side = draw(st.integers(2, 6)), draw(st.integers(8, 40))
        fraction = draw(st.floats(0.02, 0.97))
        kw = draw(st.sampled_from([{}, {"imagej": True}, {"compression": "zlib"}, {"bigtiff": True}]))

        def write(base: Path) -> Path:
            path = base.with_suffix(".tif")
            tifffile.imwrite(path, (rng.random((frames, side, side)) * 255).astype(np.uint8), **kw)
            data = path.read_bytes()
            path.write_bytes(data[: max(1, int(len(data) * fraction))])
            return path

    elif kind == "non-finite":
        value = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        count = draw(st.integers(1, 50))

        def write(base: Path) -> Path:
            a = rng.random((4, 16, 16)).astype(np.float32)
            a.reshape(-1)[rng.choice(a.size, size=count, replace=False)] = value
            path = base.with_suffix(".tif")
            tifffile.imwrite(path, a)
            return path

    elif kind == "tiny":
        shape = (draw(st.integers(1, 12)), draw(st.integers(1, 3)), draw(st.integers(1, 3)))

        def write(base: Path) -> Path:
            path = base.with_suffix(".tif")
            tifffile.imwrite(path, (rng.random(shape) * 255).astype(np.uint8))
            return path

    elif kind == "mrc":
        dims = draw(st.tuples(st.integers(20, 10**6), st.integers(20, 10**6), st.integers(20, 10**6)))

        def write(base: Path) -> Path:
            head = bytearray(1024)
            struct.pack_into("<4i", head, 0, *dims, 2)
            struct.pack_into("<3i", head, 28, *dims)
            head[208:212] = b"MAP "
            path = base.with_suffix(".mrc")
            path.write_bytes(bytes(head) + bytes(1024))
            return path

    elif kind == "empty":
        suffix = draw(st.sampled_from([".tif", ".png", ".mrc", ".mp4"]))

        def write(base: Path) -> Path:
            path = base.with_suffix(suffix)
            path.write_bytes(b"")
            return path

    else:  # a folder whose frames differ in size, or hold NaN
        sizes = draw(st.lists(st.integers(8, 20), min_size=2, max_size=4, unique=True))
        nan = draw(st.booleans())

        def write(base: Path) -> Path:
            base.mkdir()
            for k, side in enumerate(sizes):
                frame = np.full((24, 24), np.nan, np.float32) if nan else np.zeros((side, side), np.uint8)
                tifffile.imwrite(base / f"f{k}.tif", frame)
            return base

    return kind, write


@st.composite
def bad_annotations(draw):
    """(kind, writer, needs_video)."""
    kind = draw(
        st.sampled_from(["coco-structure", "coco-polygon", "coco-huge", "mask-values", "mask-count", "yolo-box"])
    )
    if kind == "coco-structure":
        data = draw(
            st.sampled_from(
                [
                    [],
                    {"images": []},
                    {"images": [], "annotations": []},
                    {"images": [{"id": 1}], "annotations": []},
                    {"images": [{"id": 1, "file_name": "a.png"}] * 2, "annotations": []},
                    {
                        "images": [{"id": 1, "file_name": "a.png", "height": 24, "width": 24}],
                        "annotations": [{"id": 1, "image_id": 7, "segmentation": [[1, 1, 5, 1, 5, 5]]}],
                    },
                    {
                        "images": [{"id": 1, "file_name": "a.png", "height": 24, "width": 24}],
                        "annotations": [{"id": 1, "image_id": 1}],
                    },
                ]
            )
        )
        text = json.dumps(data) if draw(st.booleans()) else json.dumps(data)[: draw(st.integers(0, 20))]
    elif kind == "coco-polygon":
        coords = draw(
            st.one_of(
                st.lists(st.floats(0, 20), min_size=0, max_size=5),  # fewer than 3 vertices
                st.lists(st.floats(0, 20), min_size=7, max_size=7),  # an odd count
                st.lists(st.floats(30, 1e6), min_size=6, max_size=12, unique=True),  # outside the image
                st.lists(st.sampled_from([float("nan"), float("inf")]), min_size=6, max_size=6),
                st.lists(st.text(max_size=3), min_size=6, max_size=6),
            )
        )
        data = {
            "images": [{"id": 1, "file_name": "a.png", "height": 24, "width": 24}],
            "annotations": [{"id": 1, "image_id": 1, "segmentation": [coords]}],
        }
        text = json.dumps(data)
    elif kind == "coco-huge":
        side = draw(st.integers(60_000, 10**7))
        data = {
            "images": [{"id": 1, "file_name": "a.png", "height": side, "width": side}],
            "annotations": [{"id": 1, "image_id": 1, "segmentation": [[1, 1, 9, 1, 9, 9]]}],
        }
        text = json.dumps(data)
    if kind.startswith("coco"):

        def write(base: Path) -> Path:
            path = base.with_suffix(".json")
            path.write_text(text)
            return path

        return kind, write, False
    if kind == "mask-values":
        odd = draw(st.lists(st.integers(2, 254), min_size=1, max_size=5))

        def write(base: Path) -> Path:
            a = np.zeros((10, 24, 24), np.uint8)
            a.reshape(-1)[: len(odd)] = odd
            path = base.with_suffix(".tif")
            tifffile.imwrite(path, a)
            return path

        return kind, write, False
    if kind == "mask-count":
        n = draw(st.integers(1, 20).filter(lambda n: n != 10))

        def write(base: Path) -> Path:
            path = base.with_suffix(".tif")
            tifffile.imwrite(path, np.zeros((n, 24, 24), np.uint8))
            return path

        return kind, write, True
    line = draw(st.sampled_from(["0 0.5 0.5 0.2 0.2", "0 a b c d e f", "0 0.1 0.1 0.2", "x"]))

    def write(base: Path) -> Path:
        path = base.with_suffix(".txt")
        path.write_text(line + "\n")
        return path

    return kind, write, True


def _outside(lo: float, hi: float):
    return st.one_of(
        st.floats(max_value=lo, exclude_max=True, allow_nan=False),
        st.floats(min_value=hi, exclude_min=True, allow_nan=False),
        st.sampled_from(["nan", "inf", "-inf", "1e-320", "abc", "", "1e400"]),
    )


@st.composite
def bad_calibrations(draw):
    option, (lo, hi) = draw(
        st.sampled_from(
            [
                ("--nm-per-px", (1e-4, 1e6)),
                ("--frame-interval", (1e-9, 2.6e6)),
                ("--dose-rate", (1e-12, 1.0)),
                ("--foil-thickness", (0.1, 1e6)),
                ("--search-range", (1e-3, 1e6)),
            ]
        )
    )
    value = draw(_outside(lo, hi))
    return option, str(value)


@st.composite
def bad_numbers(draw):
    """Command lines of simulate / simulate-fields with one bad or over-sized number."""
    command, option, values = draw(
        st.sampled_from(
            [
                ("simulate", "--size", st.one_of(st.integers(-100, 7), st.integers(60_000, 10**12))),
                ("simulate", "--frames", st.one_of(st.integers(-100, 0), st.integers(10**8, 10**15))),
                ("simulate", "--seed", st.integers(-(10**6), -1)),
                ("simulate-fields", "--steps", st.one_of(st.integers(-100, 0), st.integers(10**9, 10**15))),
                ("simulate-fields", "--size", st.one_of(st.integers(-100, 7), st.integers(10**6, 10**9))),
                ("simulate-fields", "--save-every", st.integers(-100, 0)),
                ("simulate-fields", "--dt", st.sampled_from(["0", "-1", "nan", "inf", "1e-400"])),
                ("simulate-fields", "--dx", st.sampled_from(["0", "-0.5", "nan", "inf"])),
                ("simulate-fields", "--device", st.sampled_from(["gpu0", "cuda:99", "tpu", "", "cpu:x"])),
                ("simulate-fields", "--integrator", st.text(min_size=1, max_size=8).filter(lambda s: s.isalpha())),
                ("simulate", "--scenario", st.text(min_size=1, max_size=8).filter(lambda s: s.isalpha())),
                ("simulate", "--frames", st.sampled_from(["1e9", "ten", "1.5", "", "0x10"])),
            ]
        )
    )
    value = draw(values)
    if option in ("--integrator", "--scenario") and value in (
        "euler",
        "imex",
        "spectral",
        "nucleation",
    ):
        value = value + "x"
    return [command, option, str(value)]


@st.composite
def bad_fit_settings(draw):
    key, value = draw(
        st.one_of(
            st.tuples(st.just("pretrain_iters"), st.integers(10**8, 10**15)),
            st.tuples(st.just("joint_iters"), st.one_of(st.integers(-(10**6), -1), st.integers(10**8, 10**15))),
            st.tuples(st.sampled_from(["batch", "gap", "eval_every", "checkpoint_every"]), st.integers(-100, 0)),
            st.tuples(st.sampled_from(["dt", "lr_net", "lr_phys", "void_weight"]), st.floats(-1e6, 0.0)),
            st.tuples(st.just("net"), st.fixed_dictionaries({"depth": st.integers(20, 10**4)})),
            st.tuples(st.just("net"), st.fixed_dictionaries({"width": st.integers(10**5, 10**9)})),
            st.tuples(st.just("crop"), st.integers(-100, 15)),
            st.tuples(st.text(min_size=1, max_size=10).filter(lambda k: k.isidentifier()), st.integers()),
        )
    )
    if key.isidentifier() and key not in {
        "pretrain_iters",
        "joint_iters",
        "batch",
        "gap",
        "eval_every",
        "checkpoint_every",
        "dt",
        "lr_net",
        "lr_phys",
        "void_weight",
        "net",
        "crop",
    }:
        key = "no_such_" + key  # an unknown setting
    return {key: value}


#: Settings of each command with a --config file, and the kind of value each takes.
CONFIG_KEYS = {
    "fit": {
        "pretrain_iters": "count",
        "joint_iters": "count",
        "batch": "count",
        "dt": "positive",
        "lr_net": "positive",
    },
    "demo": {"joint_iters": "count", "gap": "count", "void_weight": "positive"},
    "simulate": {"frames": "count", "steps_per_frame": "count", "seed": "count"},
    "evaluate": {"fit_seeds": "count", "workers": "count", "sensitivity_step": "positive"},
}


def _not_a_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return True
    return False


def _bad_value(kind: str):
    """Values no setting of ``kind`` takes: text (non-ASCII too), null, booleans, lists, tables, negative or
    non-finite numbers."""
    common = st.one_of(
        st.text(max_size=6).filter(_not_a_number),
        st.sampled_from(["٣٠", "６", "2.5e", "1_0", "½", "ⅷ"]),
        st.none(),
        st.booleans(),
        st.lists(st.integers(0, 9), max_size=2),
        st.dictionaries(st.sampled_from(["a", "value"]), st.integers(0, 9), max_size=1),
    )
    if kind == "count":
        return st.one_of(common, st.integers(max_value=-1), st.floats(0.1, 1e3).filter(lambda v: v != int(v)))
    return st.one_of(common, st.floats(max_value=0.0, allow_nan=False), st.sampled_from([float("nan"), float("inf")]))


@st.composite
def bad_config_files(draw):
    """(command, file name, bytes) of a settings file that must be refused."""
    command = draw(st.sampled_from(sorted(CONFIG_KEYS)))
    form = draw(st.sampled_from(["value", "value", "syntax", "shape", "bytes"]))
    suffix = draw(st.sampled_from([".json", ".toml"]))
    if form == "value":
        key, kind = draw(st.sampled_from(sorted(CONFIG_KEYS[command].items())))
        value = draw(_bad_value(kind))
        if suffix == ".toml" and value is not None and not isinstance(value, dict):
            text = f"{key} = {json.dumps(value, ensure_ascii=False)}\n"
            if isinstance(value, bool):
                text = f"{key} = {str(value).lower()}\n"
            elif isinstance(value, float) and not np.isfinite(value):
                text = f"{key} = {'nan' if np.isnan(value) else 'inf'}\n"
        else:
            suffix = ".json"
            text = json.dumps({key: value}, ensure_ascii=False)
        data = text.encode()
    elif form == "syntax":
        data = draw(st.sampled_from(['{"frames": 3', "{'frames': 3}", "frames = ", "[fit\njoint_iters = 1", "{,}"]))
        data = data.encode()
    elif form == "shape":
        suffix = ".json"
        data = json.dumps(draw(st.sampled_from([[], [1, 2], 3, "text", None, {"fit": 3}, {"evaluate": []}]))).encode()
    else:
        data = draw(st.binary(min_size=1, max_size=64))
    return command, "settings" + suffix, data


@st.composite
def bad_cases(draw):
    """One bad case: (kind, build) where build(folder, valid) -> the command line."""
    family = draw(st.sampled_from(["video", "annotations", "calibration", "numbers", "fit-settings", "config-file"]))
    if family == "video":
        kind, write = draw(bad_videos())
        command = draw(st.sampled_from(["measure", "fit"]))

        def build(folder: Path, valid: dict[str, Path]) -> list[str]:
            bad = write(folder / "bad")
            if command == "fit":
                return ["fit", str(bad), "--annotations", str(valid["masks"]), "--out", str(folder / "out")]
            return ["measure", str(valid["masks"]), "--video", str(bad), "--out", str(folder / "out")]

        return f"video/{kind}", build
    if family == "annotations":
        kind, write, needs_video = draw(bad_annotations())

        def build(folder: Path, valid: dict[str, Path]) -> list[str]:
            bad = write(folder / "bad")
            args = ["measure", str(bad), "--out", str(folder / "out")]
            return [*args, "--video", str(valid["video"])] if needs_video else args

        return f"annotations/{kind}", build
    if family == "calibration":
        option, value = draw(bad_calibrations())

        def build(folder: Path, valid: dict[str, Path]) -> list[str]:
            return ["measure", str(valid["masks"]), "--out", str(folder / "out"), option, value]

        return f"calibration/{option}", build
    if family == "numbers":
        args = draw(bad_numbers())

        def build(folder: Path, valid: dict[str, Path]) -> list[str]:
            return [*args, "--out", str(folder / "out")]

        return f"numbers/{args[0]} {args[1]}", build
    if family == "config-file":
        command, name, data = draw(bad_config_files())

        def build(folder: Path, valid: dict[str, Path]) -> list[str]:
            (folder / name).write_bytes(data)
            args = [command, "--config", str(folder / name), "--out", str(folder / "out")]
            if command == "fit":
                args += [str(valid["video"]), "--annotations", str(valid["masks"])]
            return [*args, "--quick"] if command == "evaluate" else args

        return f"config-file/{command}", build
    setting = draw(bad_fit_settings())

    def build(folder: Path, valid: dict[str, Path]) -> list[str]:
        (folder / "fit.json").write_text(json.dumps(setting))
        return [
            "fit",
            str(valid["video"]),
            "--annotations",
            str(valid["masks"]),
            "--out",
            str(folder / "out"),
            "--config",
            str(folder / "fit.json"),
        ]

    return f"fit-settings/{next(iter(setting))}", build


# --------------------------------------------------------------------------- the contract


def _tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def outcome(build, valid: dict[str, Path], base: Path) -> tuple[str, str]:
    """Run one case in a fresh folder; returns (outcome, detail) where outcome is ``"ok"`` or the broken rule."""
    folder = Path(tempfile.mkdtemp(dir=base))
    try:
        args = build(folder, valid)
        before = _tree(folder)
        t0 = time.perf_counter()
        r = runner.invoke(app, args)
        seconds = time.perf_counter() - t0
        err = r.stderr
        lines = [line for line in err.splitlines() if line.strip()]
        detail = f"{args[:2]}... exit {r.exit_code}: {err.strip()[:300]!r}"
        if "Traceback" in err + r.stdout or not (r.exception is None or isinstance(r.exception, SystemExit)):
            return "traceback", f"{detail} {r.exception!r}"
        if r.exit_code == 0:
            return "silent success", detail
        if seconds > HANG_S:
            return "hang", f"{detail} ({seconds:.1f} s)"
        if _tree(folder) != before:
            return "leftover", f"{detail} {sorted(_tree(folder) - before)}"
        if r.exit_code != 2 or len(lines) != 1 or not lines[0].startswith("neuradiff: error: "):
            return "not one line with exit 2", detail
        return "ok", detail
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def valid(tmp_path_factory) -> dict[str, Path]:
    return _valid_inputs(tmp_path_factory.mktemp("valid"))


@pytest.fixture
def fuzz_env(monkeypatch):
    """The same limits on every machine: 2 GB of memory."""
    monkeypatch.setenv("NEURADIFF_MAX_MEMORY_GB", "2")
    monkeypatch.delenv("NEURADIFF_MAX_WORK", raising=False)


def _campaign(valid, base: Path, n: int) -> Counter:
    counts: Counter = Counter()
    kinds: Counter = Counter()

    @settings(
        max_examples=n,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=bad_cases())
    def run(case):
        kind, build = case
        result, detail = outcome(build, valid, base)
        counts[result] += 1
        kinds[kind.split("/")[0]] += 1
        assert result == "ok", f"{kind}: {result}: {detail}"

    run()
    counts["cases"] = sum(v for k, v in counts.items() if k != "cases")
    print(f"\nfuzz campaign: {dict(counts)}; by family {dict(kinds)}")
    return counts


def test_fuzz_every_kind_of_bad_input_keeps_the_contract(valid, tmp_path, fuzz_env):
    counts = _campaign(valid, tmp_path, n=20)
    assert counts["ok"] == counts["cases"] >= 15


@pytest.mark.slow
def test_fuzz_campaign_of_250_cases(valid, tmp_path, fuzz_env):
    counts = _campaign(valid, tmp_path, n=250)
    assert counts["ok"] == counts["cases"] >= 200
    assert list(tmp_path.iterdir()) == []
