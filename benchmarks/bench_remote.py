"""Push and pull through a localhost S3 server, side by side with `dvc push` / `dvc pull`:
(a) one 1 GiB file, (b) 10,000 files of 4 KiB.

    make bench-peers     # once: DVC and dvc-s3 into benchmarks/.venv-dvc
    .venv/bin/python benchmarks/bench_remote.py [--runs 3] [--gib 1]

One S3-compatible server (moto's server mode, on 127.0.0.1) serves both tools, each with
its own bucket. Push: from a repository whose data is already added (`dvc add`) or
snapshotted. Pull: after deleting the local cache/objects and the data, until the data is
back in the work tree (`dvc pull`; `nbversion pull` then `nbversion restore`). Each command
is a fresh process; medians of --runs runs, taking turns at going first.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import machine

HERE = Path(__file__).resolve().parent
DVC = HERE / ".venv-dvc" / "bin" / "dvc"
NBVERSION = str(Path(sys.executable).parent / "nbversion")
SNAPSHOT = "import nbversion; nbversion.snapshot('data', {}, files=['data'])"

sys.path.insert(0, str(HERE))
from bench_files import make_repo, write_data  # noqa: E402


def run(args: list[str], cwd: Path, env: dict[str, str]) -> float:
    os.sync()
    start = time.perf_counter()
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return elapsed


def make_bucket(endpoint: str, name: str) -> None:
    import s3fs

    s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint}, skip_instance_cache=True).mkdir(name)


def dvc_round(work: Path, case: str, gib: float, endpoint: str, env: dict[str, str], bucket: str) -> dict[str, float]:
    repo = work / "dvc"
    make_repo(repo)
    write_data(repo, case, gib)
    run([str(DVC), "init", "-q"], repo, env)
    run([str(DVC), "add", "-q", "data"], repo, env)
    run([str(DVC), "remote", "add", "-d", "s3", f"s3://{bucket}/dvc"], repo, env)
    run([str(DVC), "remote", "modify", "s3", "endpointurl", endpoint], repo, env)
    t = {"push": run([str(DVC), "push", "-q"], repo, env)}
    shutil.rmtree(repo / ".dvc" / "cache")
    shutil.rmtree(repo / "data")
    t["pull"] = run([str(DVC), "pull", "-q"], repo, env)
    return t


def nbversion_round(work: Path, case: str, gib: float, env: dict[str, str], bucket: str) -> dict[str, float]:
    repo = work / "nbv"
    make_repo(repo)
    write_data(repo, case, gib)
    run([sys.executable, "-c", SNAPSHOT], repo, env)
    run([NBVERSION, "remote", "add", "s3", f"s3://{bucket}/nbv"], repo, env)
    t = {"push": run([NBVERSION, "push"], repo, env)}
    shutil.rmtree(repo / ".nbversion" / "objects")
    shutil.rmtree(repo / "data")
    t["pull"] = run([NBVERSION, "pull"], repo, env) + run([NBVERSION, "restore", "HEAD"], repo, env)
    assert (repo / "data").exists()
    return t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--cases", default="big,many", help="which cases to run (default: big,many)")
    args = parser.parse_args()
    if not DVC.exists():
        sys.exit("DVC is not installed for the benchmarks: run `make bench-peers` first")
    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
    env = {**os.environ, "FSSPEC_S3_ENDPOINT_URL": endpoint}
    results: dict[str, dict[str, list[dict[str, float]]]] = {}
    try:
        for case in args.cases.split(","):
            results[case] = {"dvc": [], "nbversion": []}
            for i in range(args.runs):
                order = ("dvc", "nbversion") if i % 2 == 0 else ("nbversion", "dvc")
                for tool in order:
                    bucket = f"bench-{tool}-{case}-{i}"
                    make_bucket(endpoint, bucket)
                    work = Path(tempfile.mkdtemp(prefix=f"nbv-remote-{tool}-"))
                    try:
                        if tool == "dvc":
                            results[case][tool].append(dvc_round(work, case, args.gib, endpoint, env, bucket))
                        else:
                            results[case][tool].append(nbversion_round(work, case, args.gib, env, bucket))
                    finally:
                        shutil.rmtree(work, ignore_errors=True)
    finally:
        server.stop()
    dvc_version = subprocess.run([str(DVC), "--version"], capture_output=True, text=True).stdout.strip()
    print(f"Machine: {machine()}")
    print(f"DVC {dvc_version} with dvc-s3; moto server on localhost; {args.runs} runs, medians (s)\n")
    print("| case | step | DVC (s) | nbversion (s) | nbversion / DVC | throughput DVC / nbversion |")
    print("|---|---|---|---|---|---|")
    sizes = {"big": args.gib * 2**30, "many": 10_000 * 4096}
    for case, label in (("big", f"(a) one {args.gib:g} GiB file"), ("many", "(b) 10,000 files of 4 KiB")):
        if case not in results:
            continue
        for step in ("push", "pull"):
            d = statistics.median(r[step] for r in results[case]["dvc"])
            n = statistics.median(r[step] for r in results[case]["nbversion"])
            mb = sizes[case] / 2**20
            print(f"| {label} | {step} | {d:.2f} | {n:.2f} | {n / d:.2f}x | {mb / d:.0f} / {mb / n:.0f} MiB/s |")


if __name__ == "__main__":
    main()
