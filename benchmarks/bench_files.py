"""Tracked files, side by side with DVC: (a) one 1 GiB file, (b) 10,000 files of 4 KiB,
(c) the no-op re-run, (d) one small file changed, (e) restoring deleted files; plus the
time to capture git state in a repository of 10,000 committed files.

    make bench-peers     # once: DVC into benchmarks/.venv-dvc (its own environment)
    .venv/bin/python benchmarks/bench_files.py [--runs 3] [--gib 1]

Both tools run as a user runs them from a shell: one process per command (`dvc add`,
`dvc status`, `dvc checkout`; for nbversion a `python -c` that calls `nbversion.snapshot`,
and `nbversion restore`), so start-up costs count for both. A third column runs nbversion's
steps in one long-lived process, as `%snapshot` runs in a notebook's kernel (where a DVC
user still starts `!dvc ...` processes). The same data, in two identical
repositories, with `data/` git-ignored in both (as DVC arranges). Medians of --runs runs,
taking turns at going first.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import machine

HERE = Path(__file__).resolve().parent
DVC = HERE / ".venv-dvc" / "bin" / "dvc"
PYTHON = sys.executable
NBVERSION = str(Path(sys.executable).parent / "nbversion")
SNAPSHOT = "import sys, nbversion; nbversion.snapshot(sys.argv[1], {}, files=['data'])"


def sh(args: list[str], cwd: Path) -> float:
    """Run a command; return its wall-clock time. Fails loudly."""
    os.sync()
    start = time.perf_counter()
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return elapsed


def make_repo(path: Path) -> None:
    path.mkdir()
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    (path / ".gitignore").write_text("/data\n")
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@b"}
    subprocess.run(["git", "add", ".gitignore"], cwd=path, check=True)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=path, check=True, env=env)


def write_data(root: Path, case: str, gib: float) -> None:
    data = root / "data"
    data.mkdir()
    if case == "big":
        chunk = os.urandom(64 * 1024 * 1024)
        with open(data / "big.bin", "wb") as f:
            for _ in range(int(gib * 16)):
                f.write(chunk)
    else:
        for i in range(10_000):
            (data / f"f{i:05d}.bin").write_bytes(os.urandom(4096))


def small_change(root: Path, case: str) -> None:
    if case == "big":
        with open(root / "data" / "big.bin", "r+b") as f:
            f.seek(12345)
            f.write(b"changed!")
    else:
        (root / "data" / "f05000.bin").write_bytes(os.urandom(4096))


def run_dvc(work: Path, case: str, gib: float) -> dict[str, float]:
    repo = work / "dvc"
    make_repo(repo)
    write_data(repo, case, gib)
    sh([str(DVC), "init", "-q"], repo)
    t = {"add": sh([str(DVC), "add", "-q", "data"], repo)}
    t["noop"] = sh([str(DVC), "status"], repo)
    t["noop_add"] = sh([str(DVC), "add", "-q", "data"], repo)
    small_change(repo, case)
    t["change"] = sh([str(DVC), "add", "-q", "data"], repo)
    shutil.rmtree(repo / "data")
    t["restore"] = sh([str(DVC), "checkout", "-q"], repo)
    return t


def run_nbversion(work: Path, case: str, gib: float) -> dict[str, float]:
    repo = work / "nbv"
    make_repo(repo)
    write_data(repo, case, gib)
    t = {"add": sh([PYTHON, "-c", SNAPSHOT, "first"], repo)}
    t["noop"] = sh([PYTHON, "-c", SNAPSHOT, "no-op"], repo)
    t["noop_add"] = t["noop"]
    small_change(repo, case)
    t["change"] = sh([PYTHON, "-c", SNAPSHOT, "changed"], repo)
    shutil.rmtree(repo / "data")
    t["restore"] = sh([NBVERSION, "restore", "HEAD"], repo)
    return t


IN_KERNEL = """
import json, os, shutil, sys, time
import nbversion
case = sys.argv[1]
sys.path.insert(0, {here!r})
from bench_files import small_change
t = {{}}
def timed(name, call):
    os.sync()
    start = time.perf_counter()
    call()
    t[name] = time.perf_counter() - start
timed("add", lambda: nbversion.snapshot("first", {{}}, files=["data"]))
timed("noop", lambda: nbversion.snapshot("no-op", {{}}, files=["data"]))
t["noop_add"] = t["noop"]
small_change(__import__("pathlib").Path("."), case)
timed("change", lambda: nbversion.snapshot("changed", {{}}, files=["data"]))
shutil.rmtree("data")
timed("restore", lambda: nbversion.restore("HEAD", {{}}, files_only=True))
print(json.dumps(t))
"""


def run_nbversion_in_kernel(work: Path, case: str, gib: float) -> dict[str, float]:
    """The same steps inside one long-lived Python process, as in a notebook's kernel."""
    repo = work / "kernel"
    make_repo(repo)
    write_data(repo, case, gib)
    proc = subprocess.run(
        [PYTHON, "-c", IN_KERNEL.format(here=str(HERE)), case], cwd=repo, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def git_capture(runs: int) -> tuple[float, float, int]:
    """Median seconds of nbversion's git capture, and of a bare `git status`, on 10k files."""
    from nbversion.capture import git_state
    from nbversion.store import ObjectStore

    with tempfile.TemporaryDirectory(prefix="nbv-git-") as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        subprocess.run(["git", "init", "-q", str(repo)], check=True)
        for d in range(100):
            (repo / f"pkg{d:02d}").mkdir()
            for f in range(100):
                (repo / f"pkg{d:02d}" / f"m{f:02d}.py").write_text(f"X = {d * 100 + f}\n")
        env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@b"}
        subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
        subprocess.run(["git", "commit", "-qm", "10k files"], cwd=repo, check=True, env=env)
        for d in range(5):
            (repo / f"pkg{d:02d}" / "m00.py").write_text("X = 'edited'\n")
        (repo / "scratch.py").write_text("print('untracked')\n")
        store = ObjectStore.local(str(Path(tmp) / "objects"))
        ours, bare = [], []
        for _ in range(runs * 3):
            start = time.perf_counter()
            state, artifacts = git_state.capture(repo, store, 1_000_000)
            ours.append(time.perf_counter() - start)
            start = time.perf_counter()
            subprocess.run(["git", "status", "--porcelain"], cwd=repo, check=True, capture_output=True)
            bare.append(time.perf_counter() - start)
        assert state.dirty and len(artifacts) == 2
        files = int(subprocess.run(["git", "ls-files"], cwd=repo, capture_output=True, text=True).stdout.count("\n"))
    return statistics.median(ours), statistics.median(bare), files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--gib", type=float, default=1.0, help="size of the big file (default 1 GiB)")
    args = parser.parse_args()
    if not DVC.exists():
        sys.exit("DVC is not installed for the benchmarks: run `make bench-peers` first")
    dvc_version = subprocess.run([str(DVC), "--version"], capture_output=True, text=True).stdout.strip()
    results: dict[str, dict[str, list[dict[str, float]]]] = {}
    for case in ("big", "many"):
        runners = {"dvc": run_dvc, "nbversion": run_nbversion, "kernel": run_nbversion_in_kernel}
        results[case] = {tool: [] for tool in runners}
        for run in range(args.runs):
            order = list(runners) if run % 2 == 0 else list(reversed(runners))
            for tool in order:
                work = Path(tempfile.mkdtemp(prefix=f"nbv-bench-{tool}-"))
                try:
                    results[case][tool].append(runners[tool](work, case, args.gib))
                finally:
                    shutil.rmtree(work, ignore_errors=True)

    print(f"Machine: {machine()}")
    print(f"DVC {dvc_version}; nbversion from this checkout; {args.runs} runs, medians (wall-clock, s)\n")
    print("| case | step | DVC | nbversion (a process per command) | ratio | nbversion (in the kernel) | ratio | target |")
    print("|---|---|---|---|---|---|---|---|")
    steps = [
        ("add", "first add / snapshot", "faster"),
        ("noop", "no-op re-run (`dvc status` / snapshot)", "< 0.25x"),
        ("noop_add", "no-op re-run (`dvc add` / snapshot)", "< 0.25x"),
        ("change", "one small change, re-add / snapshot", "faster"),
        ("restore", "restore deleted data (`dvc checkout` / `nbversion restore`)", "faster"),
    ]
    for case, label in (("big", f"(a) one {args.gib:g} GiB file"), ("many", "(b) 10,000 files of 4 KiB")):
        for key, step, target in steps:
            d = statistics.median(r[key] for r in results[case]["dvc"])
            n = statistics.median(r[key] for r in results[case]["nbversion"])
            k = statistics.median(r[key] for r in results[case]["kernel"])
            print(f"| {label} | {step} | {d:.2f} | {n:.2f} | {n / d:.2f}x | {k:.2f} | {k / d:.2f}x | {target} |")
    ours, bare, files = git_capture(args.runs)
    print(f"\nGit capture on a repository of {files} committed files (5 modified, 1 untracked): "
          f"nbversion {ours * 1000:.0f} ms (median), bare `git status --porcelain` {bare * 1000:.0f} ms.")


if __name__ == "__main__":
    main()
