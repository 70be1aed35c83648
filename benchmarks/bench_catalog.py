"""The log and ref resolution on catalogs of 100, 10,000 and 100,000 snapshots.

    .venv/bin/python benchmarks/bench_catalog.py [--sizes 100 10000 100000]

Each catalog is filled with realistic rows (per snapshot: 6 artifacts, 2 metrics, a tag on
one in ten, new objects) through the catalog's own write path in batches, then timed: the
20-row log that `%snapshots` and `nbversion log` show, and resolving HEAD, HEAD~10, a tag
and an id prefix. Medians of 20 repetitions. With the indexes, every row should stay flat
as the catalog grows (O(log n)); `EXPLAIN QUERY PLAN` shows no full scan.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import machine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nbversion import api  # noqa: E402
from nbversion.catalog import Artifact, Catalog, new_id, short_id  # noqa: E402

NBVERSION = str(Path(sys.executable).parent / "nbversion")


def fill(catalog: Catalog, count: int) -> list[str]:
    ids = []
    base_ms = int(time.time() * 1000) - count * 1000
    object_counter = 0
    for i in range(count):
        snapshot_id = new_id(now_ms=base_ms + i * 1000)
        ids.append(snapshot_id)
        artifacts = []
        for name, kind in (("X", "data"), ("y", "data"), ("model", "model"), ("params", "other"), ("accuracy", "other"), ("cells", "code")):
            object_counter += 1
            artifacts.append(
                Artifact(kind=kind, source="notebook" if name == "cells" else "variable", name=name, type="x",
                         codec="json", object_id=f"{object_counter:064x}", size=1000, summary={"shape": [10, 3]},
                         new_bytes=1000)
            )
        if count <= 10_000:
            catalog.add_snapshot(
                snapshot_id=snapshot_id, message=f"run {i}", parent=ids[-2] if i else None, artifacts=artifacts,
                metrics={"accuracy": (i % 97) / 97, "loss": 1 - (i % 97) / 97},
                tag=f"t{i}" if i % 10 == 0 else None, nbversion_version="bench", python_version="3",
            )
        else:
            _fast_insert(catalog, snapshot_id, ids, i, artifacts)
    if count > 10_000:
        catalog.conn.execute("COMMIT")
    return ids


def _fast_insert(catalog: Catalog, snapshot_id: str, ids: list[str], i: int, artifacts: list[Artifact]) -> None:
    # Same rows as add_snapshot, without a checkpoint per snapshot, so 100,000 fit in a minute.
    conn = catalog.conn
    if i % 5000 == 0:
        if i:
            conn.execute("COMMIT")
        conn.execute("BEGIN")
    conn.execute(
        "INSERT INTO snapshots (id, parent, created_at, message, nbversion_version, python_version) VALUES (?, ?, ?, ?, 'bench', '3')",
        (snapshot_id, ids[-2] if i else None, "2026-01-01T00:00:00", f"run {i}"),
    )
    conn.executemany(
        "INSERT INTO objects (id, size, created_at, first_snapshot_id) VALUES (?, 1000, '2026', ?)",
        [(a.object_id, snapshot_id) for a in artifacts],
    )
    conn.executemany(
        "INSERT INTO artifacts (snapshot_id, kind, source, name, type, codec, object_id, size, summary)"
        " VALUES (?, ?, ?, ?, 'x', 'json', ?, 1000, '{}')",
        [(snapshot_id, a.kind, a.source, a.name, a.object_id) for a in artifacts],
    )
    conn.executemany(
        "INSERT INTO metrics (snapshot_id, name, value) VALUES (?, ?, ?)",
        [(snapshot_id, "accuracy", (i % 97) / 97), (snapshot_id, "loss", 1 - (i % 97) / 97)],
    )
    if i % 10 == 0:
        conn.execute("INSERT INTO tags (name, snapshot_id, created_at) VALUES (?, ?, '2026')", (f"t{i}", snapshot_id))


def timed(call, repeat: int = 20) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 10_000, 100_000])
    args = parser.parse_args()
    rows = []
    for size in args.sizes:
        with tempfile.TemporaryDirectory(prefix="nbv-catalog-") as tmp:
            repo = Path(tmp)
            (repo / ".git").mkdir()  # a repository root, without git's cost
            start = time.perf_counter()
            with api.Project(repo).open_catalog() as catalog:
                ids = fill(catalog, size)
                catalog.checkpoint()
                plan = catalog.conn.execute(
                    "EXPLAIN QUERY PLAN SELECT coalesce(sum(size), 0) FROM objects WHERE first_snapshot_id = ?", (ids[0],)
                ).fetchall()
            built = time.perf_counter() - start
            tag = f"t{(size // 2) // 10 * 10}"
            prefix = short_id(ids[size // 2])
            results = {
                "log (20 rows, %snapshots)": timed(lambda: api.log(20, repo=repo)),
                "resolve HEAD": timed(lambda: _resolve(repo, "HEAD")),
                "resolve HEAD~10": timed(lambda: _resolve(repo, "HEAD~10")),
                "resolve a tag": timed(lambda: _resolve(repo, tag)),
                "resolve an id prefix": timed(lambda: _resolve(repo, prefix)),
            }
            cli = timed(lambda: subprocess.run([NBVERSION, "log"], cwd=repo, check=True, capture_output=True), repeat=5)
            results["`nbversion log` (a process)"] = cli
            rows.append((size, built, results, " ".join(str(p[-1]) for p in plan)))
    print(f"Machine: {machine()}\n")
    names = list(rows[0][2])
    print("| operation | " + " | ".join(f"{size:,} snapshots" for size, *_ in rows) + f" | {rows[-1][0]:,} / {rows[0][0]:,} |")
    print("|---|" + "---|" * (len(rows) + 1))
    for name in names:
        cells = [f"{r[2][name] * 1000:.2f} ms" for r in rows]
        print(f"| {name} | " + " | ".join(cells) + f" | {rows[-1][2][name] / rows[0][2][name]:.2f}x |")
    print()
    for size, built, _, plan in rows:
        print(f"{size:,} snapshots built in {built:.1f} s; bytes-added lookup plan: {plan}")


def _resolve(repo: Path, ref: str) -> str:
    with api.Project(repo).open_catalog() as catalog:
        return catalog.resolve(ref)


if __name__ == "__main__":
    main()
