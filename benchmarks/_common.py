"""Shared helpers of the benchmark scripts: single-thread setup, environment record, tables, result files."""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def single_thread(threads: int = 1) -> None:
    """Pin OpenMP/MKL to ``threads`` threads; call before ``import torch``."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


#: Vector instruction sets, widest first: the first the CPU has is recorded beside its model name, since two CPUs of
#: one model name (an AMD EPYC with AVX-512 and an older one without) run the compiled kernels at very different speeds.
VECTOR_SETS = ("avx512f", "avx2", "avx", "sse4_2", "asimd")


def vector_set() -> str:
    """The widest vector instruction set of :data:`VECTOR_SETS` in the CPU's flags (``"unknown"`` off Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = set(line.split(":", 1)[1].split())
                return next((v for v in VECTOR_SETS if v in flags), "none")
    except OSError:
        pass
    return "unknown"


def source_hash() -> str:
    """SHA-256 (first 12 hex digits) of the engine's sources (src/neuradiff/physics/*.py and the kernels' C sources):
    ties figures to a version."""
    import hashlib

    root = Path(__file__).resolve().parent.parent / "src" / "neuradiff" / "physics"
    h = hashlib.sha256()
    for f in sorted([*root.glob("*.py"), *root.glob("kernels/*.c")]):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


def hold_freed_memory() -> dict[str, int | None]:
    """Keep memory freed by the implementations timed in the process instead of handing it back to the kernel, through
    the package's own handle on the C library (Linux/glibc only, and not with ``NEURADIFF_MALLOC=default``): glibc's
    trim threshold at its largest value, and no allocation served by ``mmap`` (``M_MMAP_MAX`` 0), so that every
    implementation reuses its freed pages instead of faulting them in again. Without the first, a step whose graph
    frees more than the trim threshold (the published step at 32 × 128², 256 MiB with the package's settings) ran at
    two speeds from one repeat to the next on an AMD EPYC; without the second, on an Intel Xeon its tensors of just
    over 32 MiB (glibc's largest mmap threshold) were mapped and unmapped at every step, with about 42 000 page
    faults per step in some repeats. Returns the settings made (``None`` where one could not be made).
    """
    from neuradiff.core.allocator import M_MMAP_MAX, M_TRIM_THRESHOLD, _libc

    libc = _libc()
    threshold = 2**31 - 1
    trim = threshold if libc is not None and libc.mallopt(M_TRIM_THRESHOLD, threshold) else None
    mmap_max = 0 if libc is not None and libc.mallopt(M_MMAP_MAX, 0) else None
    return {"trim_threshold": trim, "mmap_max": mmap_max}


def environment() -> dict:
    """What the figures depend on: versions, threads, CPU, load of the (shared) machine, engine source hash."""
    import torch

    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "cpu": cpu_model(),
        "vector_set": vector_set(),
        "logical_cpus": os.cpu_count(),
        "loadavg_at_start": load,
        "machine": platform.machine(),
        "physics_source_sha256": source_hash(),
    }


def print_environment(env: dict) -> None:
    print(
        f"# {env['date']}  torch {env['torch']}  threads {env['torch_threads']} "
        f"(OMP_NUM_THREADS={env['OMP_NUM_THREADS']})  {env['cpu']} ({env['logical_cpus']} logical CPUs, "
        f"{env.get('vector_set', 'unknown')})  "
        f"load average {env['loadavg_at_start']}  physics sources {env['physics_source_sha256']}"
    )


def summary(times: list[float]) -> dict:
    return {"min": min(times), "median": statistics.median(times), "n": len(times)}


def table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """``columns``: (key, header, format spec); missing values print as '-'."""
    cells = [[h for _, h, _ in columns]]
    for r in rows:
        line = []
        for key, _, fmt in columns:
            v = r.get(key)
            line.append("-" if v is None else (format(v, fmt) if fmt else str(v)))
        cells.append(line)
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    out = []
    for k, c in enumerate(cells):
        out.append("  ".join(s.rjust(w) for s, w in zip(c, widths)))
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def write_json(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(payload, indent=2, default=float) + "\n")
    return path
