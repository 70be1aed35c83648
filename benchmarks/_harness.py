"""Shared pieces of the benchmarks: run a step in a fresh process, measure it, summarize.

Each step runs in its own Python process so its peak memory (``ru_maxrss``) is its own. The
step's code sets ``result`` (a dict) and may call ``tick()``/``tock(name)`` to time parts;
``tick()`` first flushes the page cache's dirty pages (``os.sync``), so a step never pays for
the writes of the one before it.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import textwrap
from typing import Any

PRELUDE = """
import json, os, resource, sys, time
def rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
result = {}
_t = [0.0, 0.0]
def tick():
    os.sync()  # start every timed step with no other step's dirty pages still in flight
    _t[0], _t[1] = time.perf_counter(), time.process_time()
def tock(name):
    result[name] = time.perf_counter() - _t[0]
    result[name + "_cpu"] = time.process_time() - _t[1]  # all threads; far less noisy
"""

EPILOGUE = """
print("@@RESULT@@" + json.dumps(result))
"""


def run_step(code: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run *code* in a fresh interpreter and return the ``result`` dict it built."""
    source = PRELUDE + textwrap.dedent(code) + EPILOGUE
    proc = subprocess.run(
        [sys.executable, "-c", source], capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark step failed:\n{proc.stderr[-3000:]}")
    line = next(l for l in proc.stdout.splitlines() if l.startswith("@@RESULT@@"))
    return json.loads(line[len("@@RESULT@@"):])


def warm_up_memory(gib: float = 8.0) -> None:
    """Touch *gib* of memory once and free it.

    On a virtual machine, the first touch of a guest page can cost a fault in the host; the
    step that happens to touch fresh memory first (often for the page cache of a big write)
    would pay it. Touching it all once up front keeps that cost out of every measured step.
    """
    run_step(f"""
import numpy as np
block = np.ones(int({gib} * 2**27))
del block
""")


def median(values: list[float]) -> float:
    return statistics.median(values)


def machine() -> str:
    """One line describing the machine, for the report."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            mem = f"{int(f.readline().split()[1]) / 1024 / 1024:.0f} GiB RAM"
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {mem}, {platform.system()} {platform.release()}, Python {platform.python_version()}"
