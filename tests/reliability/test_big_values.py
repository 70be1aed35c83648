"""Big values stream through: snapshot and restore of an array keep the process's peak
memory near the array's own size, never multiples of it (4 GB under ``-m slow``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SNAPSHOT = r'''
import json, resource, sys
import numpy as np
import nbversion

n = int(sys.argv[1])
big = np.ones(n // 8, dtype=np.float64)
big[::4096] = np.arange(len(big[::4096]))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
nbversion.snapshot("big", {"big": big})
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"before": before, "after": after, "sum": float(big[::4096].sum())}))
'''

RESTORE = r'''
import json, resource, sys
import nbversion

ns = {}
nbversion.restore("HEAD", ns)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"peak": peak, "sum": float(ns["big"][::4096].sum()), "n": ns["big"].nbytes}))
'''


def run(repo: Path, script: str, *args: str) -> dict[str, float]:
    path = repo.parent / "script.py"
    path.write_text(script)
    result = subprocess.run([sys.executable, str(path), *args], cwd=repo, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.splitlines()[-1])


def snapshot_and_restore(repo: Path, size: int) -> None:
    base = run(repo, "import json, resource; print(json.dumps({'rss': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))")
    taken = run(repo, SNAPSHOT, str(size))
    # The array itself is in memory throughout; the snapshot may add a few chunk buffers.
    assert taken["after"] - taken["before"] < 0.1 * size + (64 << 20), taken
    assert taken["after"] < 1.25 * size + base["rss"] + (64 << 20)
    restored = run(repo, RESTORE)
    assert restored["n"] == size and restored["sum"] == taken["sum"]
    assert restored["peak"] < 1.25 * size + base["rss"] + (64 << 20), restored


def test_a_512_mib_array_streams_through(repo: Path) -> None:
    snapshot_and_restore(repo, 512 << 20)


@pytest.mark.slow
def test_a_4_gb_array_streams_through(repo: Path) -> None:
    snapshot_and_restore(repo, int(os.environ.get("NBVERSION_BIG_GB", "4")) << 30)
