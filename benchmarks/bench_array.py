"""Snapshot and restore of a 1 GiB float64 array, side by side with numpy.save / numpy.load.

    .venv/bin/python benchmarks/bench_array.py [--gib 1] [--runs 3]

Every step runs in a fresh process (so its peak memory is its own), numpy and nbversion
take turns going first run by run (so the machine's noise hits them alike), and the table
reports medians and ratios. The page cache is warm for every reader alike (no cache dropping).
Targets (issue 2): first snapshot <= 1.5x numpy.save; restore <= 1.5x numpy.load; unchanged
re-snapshot < 0.2x the first; peak memory < 1.3x the array.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

from _harness import machine, median, run_step, warm_up_memory

MAKE = """
import numpy as np
base = rss_mib()
a = np.random.default_rng(0).random(int({gib} * 2**27))
made = peak_mib()
"""


def _numpy_steps(gib: float, work: Path, rows: dict[str, list[dict]]) -> None:
    npy = work / "a.npy"
    rows["save"].append(run_step(MAKE.format(gib=gib) + f"""
tick(); np.save({str(npy)!r}, a); tock("time")
result["peak_extra_mib"] = peak_mib() - base
"""))
    rows["load"].append(run_step(f"""
import numpy as np
base = rss_mib()
tick(); a = np.load({str(npy)!r}); tock("time")
result["peak_extra_mib"] = peak_mib() - base
"""))
    npy.unlink()


def _nbversion_steps(gib: float, work: Path, rows: dict[str, list[dict]]) -> None:
    r = run_step(MAKE.format(gib=gib) + f"""
import nbversion
tick(); nbversion.snapshot("first", namespace={{"a": a}}, repo={str(work)!r}); tock("time")
result["peak_extra_mib"] = peak_mib() - base
tick(); nbversion.snapshot("again", namespace={{"a": a}}, repo={str(work)!r}); tock("again")
""")
    rows["snapshot"].append(r)
    rows["resnapshot"].append({"time": r["again"], "time_cpu": r["again_cpu"], "peak_extra_mib": float("nan")})
    rows["restore"].append(run_step(f"""
import nbversion, numpy as np
base = rss_mib()
ns = {{}}
tick(); nbversion.restore("HEAD", namespace=ns, repo={str(work)!r}); tock("time")
result["peak_extra_mib"] = peak_mib() - base
assert ns["a"].shape == (int({gib} * 2**27),)
"""))
    shutil.rmtree(work / ".nbversion")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0, help="array size in GiB (default 1)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each step (default 3)")
    args = parser.parse_args()
    gib = args.gib
    size_mib = gib * 1024
    rows: dict[str, list[dict]] = {k: [] for k in ("save", "load", "snapshot", "resnapshot", "restore")}

    warm_up_memory()
    for run in range(args.runs):
        work = Path(tempfile.mkdtemp(prefix="nbv-bench-"))
        try:
            subprocess.run(["git", "init", "-q", str(work)], check=True)
            numpy_steps = lambda: _numpy_steps(gib, work, rows)  # noqa: E731
            nbversion_steps = lambda: _nbversion_steps(gib, work, rows)  # noqa: E731
            # Alternate which goes first, so neither always inherits the other's cache state.
            for steps in (numpy_steps, nbversion_steps) if run % 2 == 0 else (nbversion_steps, numpy_steps):
                steps()
        finally:
            shutil.rmtree(work, ignore_errors=True)

    t = {k: median([r["time"] for r in v]) for k, v in rows.items()}
    best = {k: min(r["time"] for r in v) for k, v in rows.items()}
    cpu = {k: median([r["time_cpu"] for r in v]) for k, v in rows.items()}
    m = {k: median([r["peak_extra_mib"] for r in v]) for k, v in rows.items()}
    print(f"Machine: {machine()}")
    print(f"Array: {gib:g} GiB float64 ({size_mib:.0f} MiB); {args.runs} runs; wall-clock median, best, and CPU median\n")
    print("| step | wall median (s) | wall best (s) | CPU median (s) | ratio: median / best / CPU | target | peak memory over baseline |")
    print("|---|---|---|---|---|---|---|")
    lines = [
        ("numpy.save", "save", None, ""),
        ("nbversion first snapshot", "snapshot", "save", "<= 1.5x numpy.save"),
        ("nbversion unchanged re-snapshot", "resnapshot", "snapshot", "< 0.2x first snapshot"),
        ("numpy.load", "load", None, ""),
        ("nbversion restore", "restore", "load", "<= 1.5x numpy.load"),
    ]
    for label, key, versus, target in lines:
        ratio = (
            f"{t[key] / t[versus]:.2f}x / {best[key] / best[versus]:.2f}x / {cpu[key] / cpu[versus]:.2f}x"
            if versus else ""
        )
        mem = m[key]
        mem_text = "" if mem != mem else f"{mem:.0f} MiB ({mem / size_mib:.2f}x the array)"
        print(f"| {label} | {t[key]:.2f} | {best[key]:.2f} | {cpu[key]:.2f} | {ratio} | {target} | {mem_text} |")
    print("\nWall-clock times per run (s):")
    for key, values in rows.items():
        print(f"  {key:<11} " + " ".join(f"{r['time']:.3f}" for r in values))


if __name__ == "__main__":
    main()
