"""``neuradiff batch``: track and measure every recording of a folder tree, resumably, on one machine or a
Dask cluster, and gather one tidy table for the whole experiment.

A batch folder holds one ``recordings/<name>/`` folder per recording (what ``neuradiff track`` writes), a
``manifest.json`` (input hash, settings, status, timings and error of every recording; rewritten atomically
after each recording, so a killed batch resumes where it stopped), and, at the end, ``voids.csv`` (every void
of every recording, with the recording's name and its conditions), ``recordings.csv`` (one row per
recording) and ``summary.png``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import tifffile
import torch

from neuradiff._version import __version__
from neuradiff.core.checks import check_frame_interval, check_pixel_size
from neuradiff.core.errors import NeuradiffError
from neuradiff.core.files import write_json
from neuradiff.core.progress import ProgressSink, no_progress
from neuradiff.io.video import IMAGE_SUFFIXES, MOVIE_SUFFIXES, RSCIIO_SUFFIXES, TIFF_SUFFIXES, natural_key
from neuradiff.methods import load_model
from neuradiff.nets.generalist import weights_folder
from neuradiff.report.batch import write_batch_tables
from neuradiff.workflows.cluster import DaskRunner, dask_client
from neuradiff.workflows.track import run_track

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
#: The file of per-recording conditions looked for at the top of a batch folder.
CONDITIONS_FILE = "conditions.csv"

_STACK_SUFFIXES = TIFF_SUFFIXES + MOVIE_SUFFIXES + tuple(RSCIIO_SUFFIXES)
_FRAME_ONLY_SUFFIXES = tuple(s for s in IMAGE_SUFFIXES if s not in TIFF_SUFFIXES)
_HOUR = re.compile(r"^hour[_ -]?\d+$", re.I)


@dataclass(frozen=True)
class Recording:
    """One recording found in a batch folder.

    Attributes
    ----------
    path : Path
        The file, image folder or Gatan in-situ folder, as ``neuradiff track`` reads it.
    name : str
        Its path relative to the batch folder (``/``-separated); names the output folder and the table rows.
    """

    path: Path
    name: str

    @property
    def slug(self) -> str:
        """The output folder name: ``name`` with path separators and odd characters replaced."""
        return re.sub(r"[^A-Za-z0-9._-]+", "_", self.name).strip("_") or "recording"


def _visible(p: Path) -> bool:
    return not p.name.startswith(".")


def _single_page_tiff(p: Path) -> bool:
    """Whether ``p`` is a TIFF of one page (a frame of an image folder); unreadable files count as stacks."""
    try:
        with tifffile.TiffFile(p) as tif:
            return len(tif.pages) == 1
    except (OSError, ValueError, tifffile.TiffFileError):
        return False


def find_recordings(folder: str | Path, *, exclude: Path | None = None) -> list[Recording]:
    """Every recording below ``folder``, in natural order of their relative paths.

    A recording is a Gatan in-situ folder (``Hour_*/Minute_*/Second_*``), a folder of single-frame images
    (png/jpg/bmp, or two or more single-page TIFFs) or one file of a stack format (multi-page TIFF, mp4/avi,
    dm3/dm4/emd/ser/mrc). Hidden files and folders, ``exclude`` (the batch's own output folder when it sits
    inside the input) and non-image files (CSV sidecars, notes) are passed over.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np, tifffile
    >>> top = pathlib.Path(tempfile.mkdtemp())
    >>> (top / "run1").mkdir()
    >>> tifffile.imwrite(top / "run1" / "a.tif", np.zeros((4, 16, 16), np.uint8))
    >>> tifffile.imwrite(top / "b.tif", np.zeros((3, 16, 16), np.uint8))
    >>> [r.name for r in find_recordings(top)]
    ['b.tif', 'run1/a.tif']
    """
    top = Path(folder)
    if not top.is_dir():
        raise NeuradiffError(f"{top}: not a folder")
    exclude = exclude.resolve() if exclude is not None else None
    found: list[Recording] = []

    def visit(d: Path) -> None:
        if exclude is not None and d.resolve() == exclude:
            return
        entries = sorted((p for p in d.iterdir() if _visible(p)), key=lambda p: natural_key(p.name))
        dirs = [p for p in entries if p.is_dir()]
        if any(_HOUR.match(p.name) for p in dirs):
            found.append(Recording(d, _relative(d, top)))
            return
        files = [p for p in entries if p.is_file()]
        frames = [p for p in files if p.suffix.lower() in _FRAME_ONLY_SUFFIXES]
        tiffs = [p for p in files if p.suffix.lower() in TIFF_SUFFIXES]
        if frames or (len(tiffs) >= 2 and all(_single_page_tiff(p) for p in tiffs)):
            found.append(Recording(d, _relative(d, top)))
            tiffs = []
        for p in files:
            if p.suffix.lower() in _STACK_SUFFIXES and (p.suffix.lower() not in TIFF_SUFFIXES or p in tiffs):
                found.append(Recording(p, _relative(p, top)))
        for sub in dirs:
            visit(sub)

    visit(top)
    return sorted(found, key=lambda r: natural_key(r.name))


def _relative(p: Path, top: Path) -> str:
    rel = p.relative_to(top).as_posix()
    return rel if rel != "." else p.name


def hash_recording(path: Path, *, chunk: int = 1 << 20) -> str:
    """SHA-256 of a recording: of its bytes, or for a folder of every file's relative name and bytes."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            h.update(f.relative_to(path).as_posix().encode() + b"\0")
        with open(f, "rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class BatchSettings:
    """What a batch does to each recording; a recording is redone when these change.

    Attributes
    ----------
    model : str
        Model folder (``neuradiff fit``) used to recognise voids, or ``""`` for the shipped generalist recogniser.
    model_sha256 : str
        Hash of the model's weights and description.
    nm_per_px, frame_interval_s : float or None
        Calibration overrides for every recording (nm, s).
    require_nm : bool
        Fail a recording that has no pixel size (neither in its metadata nor given).
    overlay : bool
        Write each recording's ``overlay.mp4``.
    void_size, void_size_unit : float or None, str
        The generalist's expected void size (``"px"``, ``"nm"``) or ``"auto"`` (see
        :func:`~neuradiff.workflows.track.run_track`); not part of the key while unset, so batches begun before it
        existed resume.
    """

    model: str
    model_sha256: str
    nm_per_px: float | None = None
    frame_interval_s: float | None = None
    require_nm: bool = False
    overlay: bool = True
    void_size: float | None = None
    void_size_unit: str = "px"

    def key(self) -> str:
        fields = asdict(self)
        if self.void_size is None and self.void_size_unit == "px":
            del fields["void_size"], fields["void_size_unit"]
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class RecordingResult:
    """The manifest entry of one recording."""

    name: str
    input: str
    sha256: str
    settings: str
    status: str  # "done" or "failed"
    output: str = ""
    n_frames: int = 0
    seconds: float = 0.0
    frames_per_second: float = 0.0
    n_voids: int = 0
    nm_per_px: float | None = None
    frame_interval_s: float | None = None
    error: str = ""


@dataclass
class BatchSummary:
    """The outcome of a batch: every recording's entry, how many were skipped as already done, the files."""

    results: list[RecordingResult]
    skipped: int
    out: Path
    files: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[RecordingResult]:
        return [r for r in self.results if r.status != "done"]


def _model_hash(model: Path, names: tuple[str, ...] = ("model.json", "model.pt")) -> str:
    h = hashlib.sha256()
    for name in names:
        p = model / name
        if p.is_file():
            h.update(name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def track_recording(
    path: str,
    out: str,
    settings: BatchSettings,
    name: str,
    digest: str,
    threads: int = 1,
    span: int | None = None,
) -> RecordingResult:
    """Track and measure one recording into ``out``; never raises for a bad recording (the entry says why).

    Runs in a worker process of the batch: it pins torch to ``threads`` threads. With ``span``, on a Dask worker, a
    recording longer than ``span`` frames is split into parts of ``span`` frames run as tasks of the same cluster
    (:class:`~neuradiff.workflows.cluster.DaskRunner`) and joined here: the same outputs as one process.
    """
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    base = RecordingResult(name=name, input=path, sha256=digest, settings=settings.key(), status="failed")
    try:
        with contextlib.ExitStack() as stack:
            runner = None
            if span is not None and _on_dask_worker():
                client = stack.enter_context(importlib.import_module("distributed").worker_client())
                runner = DaskRunner(client, threads=threads)
            summary = run_track(
                path,
                settings.model or None,
                out,
                nm_per_px=settings.nm_per_px,
                frame_interval_s=settings.frame_interval_s,
                overlay=settings.overlay,
                void_size=settings.void_size,
                void_size_unit=settings.void_size_unit,
                require_nm=settings.require_nm,
                runner=runner,
                span=span,
            )
    except (NeuradiffError, ValueError, OSError, RuntimeError, MemoryError) as exc:
        text = str(exc).strip().splitlines()
        base.error = text[0] if text else type(exc).__name__
        base.seconds = time.perf_counter() - t0
        return base
    units = json.loads((Path(out) / "units.json").read_text()) if (Path(out) / "units.json").is_file() else {}
    voids = Path(out) / "voids.csv"
    n_voids = len(pd.read_csv(voids)) if voids.is_file() and voids.stat().st_size else 0
    cal = units.get("calibration", {}) if isinstance(units, dict) else {}
    base.status = "done"
    base.output = str(Path(out))
    base.n_frames = summary.n_frames
    base.seconds = time.perf_counter() - t0
    base.frames_per_second = summary.n_frames / max(base.seconds, 1e-9)
    base.n_voids = max(n_voids, 0)
    base.nm_per_px = cal.get("nm_per_px")
    base.frame_interval_s = cal.get("frame_interval_s")
    return base


# --------------------------------------------------------------------------- manifest


def read_manifest(out: Path) -> dict[str, RecordingResult]:
    """The entries of ``OUT/manifest.json`` by recording name (empty when there is none)."""
    p = out / MANIFEST
    if not p.is_file():
        return {}
    try:
        data = json.loads(p.read_text())
        if data.get("version") != MANIFEST_VERSION:
            raise ValueError(f"version {data.get('version')!r}")
        return {name: RecordingResult(**entry) for name, entry in data["recordings"].items()}
    except (ValueError, KeyError, TypeError) as exc:
        raise NeuradiffError(f"{p}: not a neuradiff batch manifest ({exc}); use another --out") from None


def write_manifest(out: Path, settings: BatchSettings, entries: dict[str, RecordingResult]) -> None:
    """Rewrite ``OUT/manifest.json`` atomically."""
    data = {
        "version": MANIFEST_VERSION,
        "neuradiff": __version__,
        "settings": asdict(settings),
        "settings_key": settings.key(),
        "recordings": {name: asdict(e) for name, e in sorted(entries.items())},
    }
    write_json(out / MANIFEST, data)


# --------------------------------------------------------------------------- running


Task = tuple[str, str, BatchSettings, str, str]


def _on_dask_worker() -> bool:
    try:
        importlib.import_module("distributed").get_worker()
    except (ImportError, ValueError):
        return False
    return True


def _run_local(tasks: list[Task], threads: int) -> Iterator[RecordingResult]:
    for t in tasks:
        yield track_recording(*t, threads=threads)


def _run_dask(client: Any, tasks: list[Task], threads: int, span: int | None) -> Iterator[RecordingResult]:
    """Each recording as one task (long ones split into parts of ``span`` frames, see :func:`track_recording`); a
    worker that dies (out of memory, killed) fails only its recording."""
    as_completed = importlib.import_module("distributed").as_completed
    futures = {
        client.submit(track_recording, *t, threads=threads, span=span, pure=False, key=f"track-{t[4][:12]}-{k}"): t
        for k, t in enumerate(tasks)
    }
    for fut in as_completed(list(futures)):
        try:
            yield fut.result()
        except Exception as exc:  # a lost worker: the recording is reported, the batch goes on
            path, _, settings, name, digest = futures[fut]
            text = str(exc).strip().splitlines()
            yield RecordingResult(
                name=name,
                input=path,
                sha256=digest,
                settings=settings.key(),
                status="failed",
                error=f"worker failed: {text[0] if text else type(exc).__name__}",
            )


def run_batch(
    folder: str | Path,
    out: str | Path,
    *,
    model: str | Path | None = None,
    workers: int = 1,
    scheduler: str | None = None,
    threads: int = 1,
    nm_per_px: float | None = None,
    frame_interval_s: float | None = None,
    require_nm: bool = False,
    overlay: bool = True,
    conditions: str | Path | None = None,
    progress: ProgressSink = no_progress,
    on_result: Callable[[RecordingResult], None] | None = None,
    span: int | None = None,
    void_size: float | None = None,
    void_size_unit: str = "px",
) -> BatchSummary:
    """Track and measure every recording below ``folder`` into ``out``; resume what an earlier call left.

    Parameters
    ----------
    folder : path
        The experiment: any tree of recordings (see :func:`find_recordings`).
    out : path
        The batch folder (see the module docstring). A second call with the same settings skips every
        recording already done with the same input hash; changed settings or inputs redo a recording.
    model : path, optional
        A model folder that tracks (``neuradiff fit``); default: the generalist void recogniser shipped in the
        package.
    workers : int
        Recordings processed side by side on a local Dask cluster (1: in this process, no cluster).
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://host:8786``): the recordings go to its workers, which
        must see the same paths (a shared file system). Overrides ``workers``.
    threads : int
        torch threads per worker.
    nm_per_px, frame_interval_s : float, optional
        Calibration for every recording (nm per pixel, s between frames), overriding their metadata.
    require_nm : bool
        A recording without a pixel size fails (and is reported) instead of being measured in pixels.
    overlay : bool
        Write each recording's ``overlay.mp4``.
    conditions : path, optional
        CSV with a ``recording`` column (names as in the manifest, or file/folder names) and any columns of
        conditions (temperature_K, dose_dpa, ...) copied into the tidy table. Default: ``conditions.csv`` at
        the top of ``folder`` when it exists.
    progress : ProgressSink
        Called with ``("recordings", done, total, info)`` after each recording.
    on_result : callable, optional
        Called with each recording's entry as it completes (the CLI prints failures as they happen).
    span : int, optional
        On a Dask cluster, split recordings longer than ``span`` frames into parts of ``span`` frames that the
        workers track side by side (linked across part borders in one pass: the same tables as without). Use it
        when a folder holds fewer long recordings than workers. Outputs do not depend on it, so it is not part of
        the settings a resumed batch compares.
    void_size, void_size_unit : float or None, str
        Expected void diameter for the generalist recogniser in ``"px"`` or ``"nm"`` (from each recording's
        calibration), or unit ``"auto"``: each recording's own resampling factor (see
        :func:`~neuradiff.workflows.track.run_track`). Not with ``model``.

    Returns
    -------
    BatchSummary
        Every recording's entry; ``summary.failed`` lists those that did not go through.

    Examples
    --------
    A folder with one unreadable file: the batch goes on and reports it.

    >>> import tempfile, pathlib, numpy as np, tifffile
    >>> from neuradiff.methods.supervised import SupervisedModel
    >>> from neuradiff.nets import NetConfig, RecognitionNet
    >>> top = pathlib.Path(tempfile.mkdtemp())
    >>> SupervisedModel(RecognitionNet(NetConfig(width=4, depth=1))).save(top / "model")
    >>> (top / "in").mkdir()
    >>> tifffile.imwrite(top / "in" / "a.tif", np.random.default_rng(0).random((3, 32, 32), np.float32))
    >>> _ = (top / "in" / "broken.tif").write_bytes(b"not a tiff")
    >>> s = run_batch(top / "in", top / "out", model=top / "model", overlay=False)
    >>> [(r.name, r.status) for r in s.results]
    [('a.tif', 'done'), ('broken.tif', 'failed')]
    """
    folder, out = Path(folder), Path(out)
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    if threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    if span is not None and span < 1:
        raise ValueError(f"--span must be >= 1, got {span}")
    nm_per_px = check_pixel_size("--nm-per-px", nm_per_px)
    frame_interval_s = check_frame_interval("--frame-interval", frame_interval_s)
    if void_size_unit not in ("px", "nm", "auto"):
        raise NeuradiffError(f"void size unit must be px, nm or auto, got {void_size_unit!r}")
    if model is not None and (void_size is not None or void_size_unit == "auto"):
        raise NeuradiffError("--void-size applies to the generalist recogniser (no --model)")
    if model is not None:
        model = Path(model)
        fitted = load_model(model)
        if not fitted.can_track:
            raise NeuradiffError(f"{model} holds a {fitted.method} model, which does not track")
    recordings = find_recordings(folder, exclude=out)
    if not recordings:
        raise NeuradiffError(f"{folder}: no recordings found (TIFF stacks, image folders, movies, dm3/dm4/...)")
    cond = _read_conditions(conditions, folder)
    slugs = [r.slug for r in recordings]
    if len(set(slugs)) != len(slugs):
        raise NeuradiffError(f"{folder}: two recordings map to the same output name; rename one")
    settings = BatchSettings(
        model="" if model is None else str(model.resolve()),
        model_sha256=(
            _model_hash(weights_folder(), ("generalist.json", "generalist.pt")) if model is None else _model_hash(model)
        ),
        nm_per_px=nm_per_px,
        frame_interval_s=frame_interval_s,
        require_nm=require_nm,
        overlay=overlay,
        void_size=void_size,
        void_size_unit=void_size_unit,
    )
    previous = read_manifest(out) if out.exists() else {}

    entries: dict[str, RecordingResult] = {}
    tasks: list[Task] = []
    skipped = 0
    for rec in recordings:
        digest = hash_recording(rec.path)
        old = previous.get(rec.name)
        target = out / "recordings" / rec.slug
        if (
            old is not None
            and old.status == "done"
            and old.sha256 == digest
            and old.settings == settings.key()
            and target.is_dir()
        ):
            entries[rec.name] = old
            skipped += 1
            continue
        tasks.append((str(rec.path), str(target), settings, rec.name, digest))
    total = len(recordings)
    with contextlib.ExitStack() as stack:
        if tasks and (scheduler is not None or workers > 1):
            client = stack.enter_context(dask_client(min(workers, len(tasks)), scheduler))
            runner = _run_dask(client, tasks, threads, span)
        else:
            runner = _run_local(tasks, threads)
        # Everything is validated and the workers are up: from here on the batch folder is written.
        out.mkdir(parents=True, exist_ok=True)
        _remove_stale_stages(out / "recordings")
        write_manifest(out, settings, entries)
        progress("recordings", len(entries), total)
        frames_done, t0 = 0, time.perf_counter()
        for result in runner:
            entries[result.name] = result
            write_manifest(out, settings, entries)
            frames_done += result.n_frames
            rate = frames_done / max(time.perf_counter() - t0, 1e-9)
            progress("recordings", len(entries), total, {"frames_per_s": rate})
            if on_result is not None:
                on_result(result)
    ordered = [entries[r.name] for r in recordings]
    files = _write_tables(out, recordings, ordered, cond)
    return BatchSummary(ordered, skipped, out, files)


def _remove_stale_stages(folder: Path) -> None:
    """Remove the staging folders (``.NAME.*.partial``) a killed batch left: their recordings are redone."""
    if folder.is_dir():
        for stage in folder.glob(".*.partial"):
            if stage.is_dir():
                shutil.rmtree(stage, ignore_errors=True)


# --------------------------------------------------------------------------- tables


def _read_conditions(conditions: str | Path | None, folder: Path) -> pd.DataFrame | None:
    path = Path(conditions) if conditions is not None else folder / CONDITIONS_FILE
    if not path.is_file():
        if conditions is not None:
            raise NeuradiffError(f"{path}: no such conditions file")
        return None
    try:
        table = pd.read_csv(path)
    except (ValueError, UnicodeDecodeError) as exc:
        raise NeuradiffError(f"{path}: not a readable CSV ({exc})") from None
    if "recording" not in table.columns:
        raise NeuradiffError(f"{path}: needs a 'recording' column naming each recording")
    table["recording"] = table["recording"].astype(str)
    return table


def _conditions_for(name: str, cond: pd.DataFrame | None) -> dict[str, Any]:
    if cond is None:
        return {}
    stem = Path(name).name
    for key in (name, stem, Path(stem).stem):
        rows = cond[cond["recording"] == key]
        if len(rows):
            return {k: v for k, v in rows.iloc[0].items() if k != "recording"}
    return {}


def _write_tables(
    out: Path, recordings: list[Recording], results: list[RecordingResult], cond: pd.DataFrame | None
) -> list[str]:
    """``recordings.csv``, and the tidy ``voids.csv`` with ``summary.png`` (see :func:`write_batch_tables`)."""
    rows, tables = [], []
    for rec, res in zip(recordings, results):
        extra = _conditions_for(rec.name, cond)
        entry = asdict(res)
        rows.append({"recording": entry.pop("name"), **entry, **extra})
        voids = Path(res.output) / "voids.csv" if res.status == "done" else None
        if voids is not None and voids.is_file() and voids.stat().st_size:
            t = pd.read_csv(voids)
            t.insert(0, "recording", rec.name)
            for i, (k, v) in enumerate(extra.items()):
                t.insert(1 + i, k, v)
            tables.append(t)
    return write_batch_tables(out, pd.DataFrame(rows), tables)
