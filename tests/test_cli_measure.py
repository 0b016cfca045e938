"""``neuradiff measure`` end to end, and a fuzz run of damaged inputs through readers and CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from neuradiff.cli import app
from neuradiff.core.errors import NeuradiffError
from neuradiff.io.annotations import read_annotations
from neuradiff.io.video import read_video

CREME = Path(__file__).parent / "data" / "creme-316L" / "fov200nm"
runner = CliRunner()


@pytest.mark.slow
def test_cli_measures_creme_with_video(tmp_path):
    out = tmp_path / "out"
    res = runner.invoke(
        app,
        [
            "measure",
            str(CREME / "clean.json"),
            "--video",
            str(CREME / "imgs"),
            "--nm-per-px",
            str(200 / 512),
            "--frame-interval",
            "0.5",
            "--dose-rate",
            "0.001",
            "--foil-thickness",
            "80",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "lengths in nm, times in s" in res.stdout
    for name in (
        "voids.csv",
        "frames.csv",
        "tracks.csv",
        "units.json",
        "overlay.mp4",
        "time_series.png",
        "size_histograms.png",
        "trajectories.png",
    ):
        assert (out / name).stat().st_size > 0
    units = json.loads((out / "units.json").read_text())
    assert units["units"]["swelling"].startswith("1") and units["calibration"]["source"] == "override"


@pytest.mark.slow
def test_cli_masks_alone_stay_in_px(tmp_path):
    out = tmp_path / "out"
    res = runner.invoke(app, ["measure", str(CREME / "masks1"), "--out", str(out), "--no-overlay"])
    assert res.exit_code == 0, res.output
    assert "lengths in px, times in frames" in res.stdout
    header = (out / "voids.csv").read_text().splitlines()[0]
    assert "nm" not in header and "eq_diameter_px" in header
    assert not (out / "overlay.mp4").exists()


def _truncate(src: Path, dst: Path, frac: float = 0.5) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * frac)])
    return dst


def _damaged(tmp: Path) -> tuple[list[Path], list[tuple[Path, dict]]]:
    """Damaged video inputs and damaged annotation inputs (with read_annotations kwargs)."""
    rng = np.random.default_rng(1)
    good = tmp / "good"
    good.mkdir()
    frames = rng.integers(0, 255, (4, 32, 40), dtype=np.uint8)
    tifffile.imwrite(good / "v.tif", frames, compression="zlib", photometric="minisblack")
    tifffile.imwrite(good / "ij.tif", frames, imagej=True)
    iio.imwrite(good / "f.png", frames[0])
    iio.imwrite(good / "v.mp4", frames, plugin="FFMPEG", fps=5, macro_block_size=1)

    bad = tmp / "bad"
    bad.mkdir()
    videos = [
        _truncate(good / "v.tif", bad / "trunc.tif"),
        _truncate(good / "ij.tif", bad / "trunc_ij.tif", 0.6),
        _truncate(good / "f.png", bad / "trunc.png"),
        _truncate(good / "v.mp4", bad / "trunc.mp4"),
        bad / "missing.tif",
    ]
    for suffix in (".tif", ".png", ".jpg", ".mp4", ".avi", ".dm4", ".dm3", ".emd", ".ser", ".mrc"):
        (bad / f"random{suffix}").write_bytes(rng.bytes(2000))
        (bad / f"empty{suffix}").write_bytes(b"")
        videos += [bad / f"random{suffix}", bad / f"empty{suffix}"]
    (bad / "video.xyz").write_bytes(b"abc")
    videos.append(bad / "video.xyz")
    zero = bad / "zero.tif"
    with pytest.warns(UserWarning):
        tifffile.imwrite(zero, np.zeros((0, 8), np.uint8))
    videos.append(zero)
    for name, shapes in (("mixed", [(32, 40), (32, 41)]), ("emptydir", []), ("onebad", [(32, 40), None])):
        folder = bad / name
        folder.mkdir()
        for k, shape in enumerate(shapes):
            if shape is None:
                (folder / f"f{k}.png").write_bytes(rng.bytes(300))
            else:
                iio.imwrite(folder / f"f{k}.png", np.zeros(shape, np.uint8))
        videos.append(folder)

    ann: list[tuple[Path, dict]] = []
    video = {"shape": (32, 40), "n_frames": 4}
    wrong = bad / "wrong_size"
    wrong.mkdir()
    iio.imwrite(wrong / "m.png", np.zeros((31, 40), np.uint8))
    ann.append((wrong, video))
    coco = {
        "images": [{"id": 1, "file_name": "a.png", "width": 40, "height": 32}],
        "annotations": [{"id": 1, "image_id": 1, "segmentation": [[1, 1, 50, 1, 50, 9]]}],
    }
    (bad / "outside.json").write_text(json.dumps(coco))
    ann.append((bad / "outside.json", video))
    coco["annotations"][0]["image_id"] = 9
    (bad / "badid.json").write_text(json.dumps(coco))
    ann.append((bad / "badid.json", video))
    (bad / "trunc.json").write_text(json.dumps(coco)[:40])
    (bad / "list.json").write_text("[1, 2]")
    (bad / "random.json").write_bytes(rng.bytes(500))
    (bad / "empty.json").write_bytes(b"")
    ann += [(bad / n, video) for n in ("trunc.json", "list.json", "random.json", "empty.json")]
    (bad / "outside.txt").write_text("0 0.1 0.1 1.2 0.1 1.2 0.5\n")
    (bad / "random.txt").write_bytes(rng.bytes(500))
    (bad / "odd.txt").write_text("0 0.1 0.1 0.2 0.2 0.3\n")
    ann += [(bad / n, video) for n in ("outside.txt", "random.txt", "odd.txt")]
    tifffile.imwrite(
        bad / "labels.tif", np.arange(4 * 32 * 40, dtype=np.uint8).reshape(4, 32, 40) % 7, photometric="minisblack"
    )
    ann.append((bad / "labels.tif", video))
    tifffile.imwrite(bad / "toomany.tif", np.zeros((6, 32, 40), np.uint8), photometric="minisblack")
    ann.append((bad / "toomany.tif", video))
    ann += [(p, video) for p in videos if p.suffix in (".tif", ".png", "") and p.name != "zero.tif"]
    ann.append((bad / "video.xyz", video))
    return videos, ann


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # imageio trying plugins on noise
def test_fuzz_readers_raise_only_neuradiff_errors(tmp_path):
    videos, annotations = _damaged(tmp_path)
    assert len(videos) + len(annotations) > 40
    for path in videos:
        with pytest.raises(NeuradiffError) as err:
            read_video(path)
        assert "\n" not in str(err.value), path
    for path, kw in annotations:
        with pytest.raises(NeuradiffError) as err:
            read_annotations(path, **kw)
        assert "\n" not in str(err.value), path


def _assert_one_line_exit_2(args: list[str], out: Path) -> None:
    res = runner.invoke(app, args)
    assert res.exit_code == 2, (args, res.output)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("neuradiff: error:"), (args, res.stderr)
    assert "Traceback" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
    assert not out.exists(), args


@pytest.mark.slow
def test_fuzz_cli_exits_2_with_one_line(tmp_path):
    videos, annotations = _damaged(tmp_path)
    good_masks = tmp_path / "masks"
    good_masks.mkdir()
    iio.imwrite(good_masks / "m.png", np.zeros((32, 40), np.uint8))
    out = tmp_path / "out"
    for path in videos:
        _assert_one_line_exit_2(["measure", str(good_masks), "--video", str(path), "--out", str(out)], out)
    shutil.copytree(CREME / "imgs", tmp_path / "v", ignore=shutil.ignore_patterns("[34].png"))
    for path, _ in annotations:  # with a 4-frame 32x40 video
        _assert_one_line_exit_2(
            ["measure", str(path), "--video", str(tmp_path / "good" / "v.tif"), "--out", str(out)], out
        )
    _assert_one_line_exit_2(
        ["measure", str(CREME / "masks1"), "--video", str(tmp_path / "v"), "--out", str(out)], out
    )  # 4 masks for 2 frames
    _assert_one_line_exit_2(["measure", str(good_masks), "--nm-per-px", "-2", "--out", str(out)], out)
    _assert_one_line_exit_2(
        ["measure", str(good_masks), "--foil-thickness", "50", "--out", str(out)], out
    )  # swelling needs nm/px
    (tmp_path / "file").write_text("x")
    res = runner.invoke(app, ["measure", str(good_masks), "--out", str(tmp_path / "file")])
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1
