"""Notebook state, side by side with Kishu: a 235 MB state (200 MB ndarray, a 1M-row DataFrame,
a fitted RandomForest, a params dict) versioned cell by cell in real Jupyter kernels, plus a
1 GiB array with 1% changed and the per-cell cost of automatic checkpointing.

    make bench-kishu     # once: Kishu into benchmarks/.venv-kishu (its own environment), dill into .venv
    .venv/bin/python benchmarks/bench_kishu.py [--runs 3] [--quick]

Every tool runs in its own real kernel (ipykernel, launched from its own environment through
jupyter_client and driven cell by cell by nbclient), with the same cells; times are taken on the
client side, as a user waits for them, and every timed cell starts with no dirty pages in
flight (``os.sync``). The tools:

- nbversion (this checkout, `.venv`): `%load_ext nbversion`, then `%snapshot "msg"` in its own cell
  after each step, `%restore REF`; its auto mode is `%nbversion auto on` (reported "not
  available" when this checkout has no such verb).
- Kishu (`benchmarks/.venv-kishu`): attached to the notebook file the kernel runs, as
  `kishu init NOTEBOOK` does (`init_kishu(path)` executed silently in the kernel); from then on
  it checkpoints after every cell execution by itself, so its cost for a step is the time of the
  step's cell minus the same cell's time in a kernel without any tool (same environment, same
  run). Checkout is what `kishu checkout NOTEBOOK COMMIT` executes in the kernel,
  `_kishu.checkout(COMMIT)` (the CLI itself needs a Jupyter server to find the kernel). Kishu
  keeps everything in `<notebook>.kishudb` beside the notebook, plus `$KISHU_PATH_ROOT/.kishu/
  config.ini`; each run gets its own of both. The config sets `test_mode`, which only stops
  Kishu from asking a (here nonexistent) browser frontend to save or reload the notebook:
  without it every checkout waits about 5 s for a save that never comes.
- joblib.dump / joblib.load of the namespace's variables as one dict, and
  dill.dump_module / load_module (the current name of dill.dump_session / load_session) of the
  whole session: full copies every time, in a `.venv` kernel of their own.
- No tool at all, in each environment: the same cells, for peak memory and the per-cell baseline.

"New data bytes" are what a step added to the tool's stored data (nbversion: `.nbversion/objects`;
Kishu: the pickled blobs in its database; joblib/dill: the file written); "disk growth" adds the
catalog/database around them. Peak memory is the kernel process's VmHWM. Medians of --runs runs;
ratios are taken between the medians.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_core.utils import run_sync
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from _harness import machine, warm_up_memory

HERE = Path(__file__).resolve().parent
NBV_PY = sys.executable
KISHU_PY = str(HERE / ".venv-kishu" / "bin" / "python")


@dataclass(frozen=True)
class Size:
    arr: int  # float64 elements of the big array
    rows: int  # DataFrame rows (4 columns of 8 bytes)
    fit: int  # training rows for the forest
    trees: int
    big: int  # float64 elements of the "1 GiB" array


FULL = Size(arr=25_000_000, rows=1_000_000, fit=10_000, trees=50, big=2**27)
QUICK = Size(arr=2_500_000, rows=100_000, fit=2_000, trees=10, big=2**27 // 10)

SETUP = "import numpy as np, pandas as pd\nfrom sklearn.ensemble import RandomForestClassifier"


def state_cell(s: Size) -> str:
    return f"""\
rng = np.random.default_rng(0)
arr = rng.random({s.arr})
df = pd.DataFrame({{"a": rng.random({s.rows}), "b": rng.random({s.rows}), "c": rng.random({s.rows}),
                   "d": rng.integers(0, 1000, {s.rows})}})
X = rng.random(({s.fit}, 20))
y = (X[:, 0] + X[:, 1] + 0.3 * rng.random({s.fit}) > 1.15).astype(int)
model = RandomForestClassifier(n_estimators={s.trees}, max_depth=10, random_state=0, n_jobs=1).fit(X, y)
params = {{"n_estimators": {s.trees}, "max_depth": 10, "threshold": 0.5}}
del rng, X, y"""


# The four steps after the state; with it, the five-step sequence.
STEPS = [
    ("tiny", "z = np.zeros(3)"),
    ("readonly", "print(arr.shape)"),
    ("df", "df['a'] *= 2"),
    ("params", "params['n_estimators'] = 200"),
]
# What a restored state must give back, evaluated in the kernel.
VERIFY = ("(tuple(arr.shape), round(float(arr[:1000].sum()), 6), round(float(df['a'].sum()), 3), "
          "params['n_estimators'], int(model.n_estimators))")
BIG_CELL = "big = np.random.default_rng(1).random({n})"
BIG_CHANGE = "big[:len(big) // 100] += 1"
# Twenty small cells where nothing big changes, for the per-cell cost of automatic mode.
AUTO_CELLS = [
    "i = 1", "j = i + 2", "k = i * j", "print(i, j, k)", "s = sum(range(1000))",
    "lst = [i, j, k]", "lst.append(s)", "print(len(lst))", "d = {'i': i}", "d['j'] = j",
    "f = 3.5 * k", "print(f'{f:.2f}')", "t = (i, j)", "m = max(lst)", "print(m)",
    "name = 'run' + str(i)", "flag = m > 10", "print(name, flag)", "total = i + j + k + s", "print(total)",
]
WARM_UP = "w = 0"


class Kernel:
    """A real ipykernel from *python*'s environment, driven cell by cell by nbclient.

    Cells are appended to a notebook that is written to *cwd* before each one runs (as Jupyter's
    autosave would), so a tool that reads the notebook file sees the cells it ran.
    """

    def __init__(self, work: Path, python: str, cwd: Path, env: dict[str, str] | None = None,
                 notebook: str = "bench.ipynb") -> None:
        name = f"bench-{uuid.uuid4().hex[:8]}"
        spec = work / "kernels" / name
        spec.mkdir(parents=True)
        (spec / "kernel.json").write_text(json.dumps({
            "argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": name, "language": "python",
        }))
        self.path = cwd / notebook
        self.nb = nbformat.v4.new_notebook()
        self.nb.metadata["kernelspec"] = {"name": name, "display_name": name, "language": "python"}
        # Kishu finds its kernel's id in the connection file's name, kernel-<id>.json.
        self.km = KernelManager(
            kernel_name=name, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(work / "kernels")]),
            transport="ipc", connection_file=str(work / f"kernel-{uuid.uuid4()}.json"),
        )
        self.client = NotebookClient(self.nb, km=self.km, timeout=3600, resources={"metadata": {"path": str(cwd)}})
        self.env = {**os.environ, **(env or {})}

    def __enter__(self) -> Kernel:
        self._context = self.client.setup_kernel(env=self.env)
        self._context.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._context.__exit__(*exc)

    def run(self, source: str, may_fail: bool = False) -> float | None:
        """Run one cell; return its wall-clock seconds (None if it failed and *may_fail*)."""
        self.nb.cells.append(nbformat.v4.new_code_cell(source))
        index = len(self.nb.cells) - 1
        nbformat.write(self.nb, self.path)
        os.sync()
        start = time.perf_counter()
        try:
            self.client.execute_cell(self.nb.cells[index], index)
        except CellExecutionError:
            if may_fail:
                return None
            raise
        return time.perf_counter() - start

    def output(self) -> str:
        """The last line the last cell printed on stdout (a progress bar's redraws dropped)."""
        text = "".join(o.get("text", "") for o in self.nb.cells[-1].outputs
                       if o.output_type == "stream" and o.name == "stdout")
        lines = [l.strip() for l in text.replace("\r", "\n").splitlines() if l.strip()]
        return lines[-1] if lines else ""

    def silent(self, code: str, expr: str | None = None) -> tuple[float, str | None]:
        """Execute *code* silently (no history, no cell hooks: how Kishu's CLI talks to a kernel).

        Returns the seconds it took and, if *expr* is given, its repr evaluated afterwards.
        """
        async def go() -> dict[str, Any]:
            msg_id = self.client.kc.execute(code, silent=True, store_history=False,
                                            user_expressions={"r": expr} if expr else None)
            return await self.client.async_wait_for_reply(msg_id)

        os.sync()
        start = time.perf_counter()
        reply = run_sync(go)()
        elapsed = time.perf_counter() - start
        content = reply["content"]
        if content["status"] != "ok":
            raise RuntimeError(f"{code!r} failed in the kernel: {content.get('ename')}: {content.get('evalue')}")
        if expr is None:
            return elapsed, None
        result = content["user_expressions"]["r"]
        if result["status"] != "ok":
            raise RuntimeError(f"{expr!r} failed in the kernel: {result.get('ename')}: {result.get('evalue')}")
        return elapsed, result["data"]["text/plain"]

    def eval(self, expr: str) -> Any:
        return ast.literal_eval(self.silent("", expr)[1])

    def peak_mib(self) -> float:
        """The kernel process's peak resident memory (VmHWM)."""
        with open(f"/proc/{self.km.provisioner.pid}/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) / 1024


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def nbversion_bytes(repo: Path) -> tuple[int, int]:
    """(bytes under .nbversion/objects, bytes of the whole store: objects + catalog + its WAL)."""
    root = repo / ".nbversion"
    objects = tree_bytes(root / "objects")
    catalog = sum((root / n).stat().st_size for n in ("catalog.db", "catalog.db-wal") if (root / n).exists())
    return objects, objects + catalog


def nbversion_snapshot_count(repo: Path) -> int:
    con = sqlite3.connect(f"file:{repo / '.nbversion' / 'catalog.db'}?mode=ro", uri=True)
    try:
        return con.execute("SELECT count(*) FROM snapshots").fetchone()[0]
    finally:
        con.close()


def kishu_bytes(notebook: Path) -> tuple[int, int]:
    """(bytes of Kishu's pickled blobs, bytes of its database file and journal)."""
    db = notebook.with_suffix(".kishudb")
    if not db.exists():
        return 0, 0
    blobs = 0
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        for table in ("checkpoint", "variable_snapshot"):
            try:
                blobs += con.execute(f"SELECT coalesce(sum(length(data)), 0) FROM {table}").fetchone()[0]
            except sqlite3.OperationalError:  # the table exists only in one storage mode
                pass
    finally:
        con.close()
    disk = sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))
    return blobs, disk


def git_repo(path: Path) -> None:
    path.mkdir()
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@b"}
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    (path / "README.md").write_text("bench\n")
    subprocess.run(["git", "add", "README.md"], cwd=path, check=True)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=path, check=True, env=env)


def auto_cells(k: Kernel) -> float:
    """Run the warm-up cell and the twenty small cells; return the twenty's total seconds."""
    k.run(WARM_UP)
    return sum(k.run(c) for c in AUTO_CELLS)


# --- the tools ------------------------------------------------------------------------------


def run_plain(work: Path, s: Size, python: str) -> dict[str, Any]:
    """The same cells without any tool: per-cell times to subtract, peak memory, the auto baseline."""
    cwd = work / "plain"
    cwd.mkdir()
    r: dict[str, Any] = {}
    with Kernel(work, python, cwd) as k:
        k.run(SETUP)
        r["state_cell_s"] = k.run(state_cell(s))
        r["pass_s"] = k.run("pass")
        for key, src in STEPS:
            r[f"{key}_cell_s"] = k.run(src)
        r["peak_mib"] = k.peak_mib()
        r["auto_total_s"] = auto_cells(k)
    return r


def run_nbversion(work: Path, s: Size) -> dict[str, Any]:
    repo = work / "nbv"
    git_repo(repo)
    env = {"JPY_SESSION_NAME": str(repo / "bench.ipynb")}  # what Jupyter's server tells a kernel
    r: dict[str, Any] = {}
    with Kernel(work, NBV_PY, repo, env) as k:
        k.run(SETUP + "\n%load_ext nbversion")
        k.run(state_cell(s))
        r["verify_s1"] = k.eval(VERIFY)
        r["state_bytes"] = int(k.eval("arr.nbytes + int(df.memory_usage(index=True).sum())"))
        r["col_bytes"] = int(k.eval("int(df['a'].nbytes)"))
        before = nbversion_bytes(repo)
        r["first_s"] = k.run('%snapshot "state" --tag s1')
        r["first_out"] = k.output()
        after = nbversion_bytes(repo)
        r["first_new"], r["first_disk"] = after[0] - before[0], after[1] - before[1]
        for key, src in STEPS:
            k.run(src)
            before = nbversion_bytes(repo)
            tag = " --tag s5" if key == "params" else ""
            r[f"{key}_s"] = k.run(f'%snapshot "{key}"{tag}')
            r[f"{key}_out"] = k.output()
            after = nbversion_bytes(repo)
            r[f"{key}_new"], r[f"{key}_disk"] = after[0] - before[0], after[1] - before[1]
        r["verify_s5"] = k.eval(VERIFY)
        r["storage5"] = nbversion_bytes(repo)[1]
        r["checkout_s"] = k.run("%restore s1")
        if k.eval(VERIFY) != r["verify_s1"]:
            raise RuntimeError("nbversion: %restore s1 did not give back the first state")
        r["peak_mib"] = k.peak_mib()
        # Automatic mode, if this checkout has it: a snapshot must appear after a cell.
        k.run("%nbversion auto on", may_fail=True)
        count = nbversion_snapshot_count(repo)
        k.run(WARM_UP)
        if nbversion_snapshot_count(repo) > count:
            r["auto_total_s"] = sum(k.run(c) for c in AUTO_CELLS)
        else:
            r["auto_total_s"] = None
    with Kernel(work, NBV_PY, repo, env, notebook="fresh.ipynb") as k:
        k.run(SETUP + "\n%load_ext nbversion")
        r["fresh_restore_s"] = k.run("%restore s5")
        if k.eval(VERIFY) != r["verify_s5"]:
            raise RuntimeError("nbversion: %restore s5 in a fresh kernel did not give back the last state")
    return r


def kishu_env(work: Path) -> dict[str, str]:
    root = work / "kishu-root"
    (root / ".kishu").mkdir(parents=True, exist_ok=True)
    # test_mode: no browser frontend here to save/reload the notebook for Kishu (see the docstring).
    (root / ".kishu" / "config.ini").write_text("[JUPYTERINT]\ntest_mode = True\n")
    return {"KISHU_PATH_ROOT": str(root)}


def run_kishu(work: Path, s: Size) -> dict[str, Any]:
    cwd = work / "kishu"
    cwd.mkdir()
    env = kishu_env(work)
    r: dict[str, Any] = {}
    with Kernel(work, KISHU_PY, cwd, env) as k:
        nb = k.path
        k.run(SETUP)
        k.run(state_cell(s))
        r["verify_s1"] = k.eval(VERIFY)
        k.silent(f"from kishu import init_kishu; init_kishu({str(nb)!r})")  # what `kishu init` runs
        before = kishu_bytes(nb)
        r["first_cell_s"] = k.run("pass")  # Kishu's first checkpoint happens after this cell
        after = kishu_bytes(nb)
        r["first_new"], r["first_disk"] = after[0] - before[0], after[1] - before[1]
        c1 = k.eval("_kishu._kishu_graph.head()")
        for key, src in STEPS:
            before = kishu_bytes(nb)
            r[f"{key}_cell_s"] = k.run(src)
            after = kishu_bytes(nb)
            r[f"{key}_new"], r[f"{key}_disk"] = after[0] - before[0], after[1] - before[1]
        c5 = k.eval("_kishu._kishu_graph.head()")
        r["verify_s5"] = k.eval(VERIFY)
        r["storage5"] = kishu_bytes(nb)[1]
        r["checkout_s"], _ = k.silent(f"_kishu.checkout({c1!r})")  # what `kishu checkout NB COMMIT` runs
        if k.eval(VERIFY) != r["verify_s1"]:
            raise RuntimeError("Kishu: checkout of the first commit did not give back the first state")
        r["peak_mib"] = k.peak_mib()
        r["auto_total_s"] = auto_cells(k)
    with Kernel(work, KISHU_PY, cwd, env, notebook="fresh.ipynb") as k:
        k.run(SETUP)
        k.silent(f"from kishu import init_kishu; init_kishu({str(nb)!r})")
        r["fresh_restore_s"], _ = k.silent(f"_kishu.checkout({c5!r})")
        if k.eval(VERIFY) != r["verify_s5"]:
            raise RuntimeError("Kishu: checkout in a fresh kernel did not give back the last state")
    return r


BASELINE_SETUP = SETUP + """
import joblib, dill
NAMES = ("arr", "df", "model", "params", "z")
def _state():
    return {n: globals()[n] for n in NAMES if n in globals()}"""


def run_baselines(work: Path, s: Size) -> dict[str, Any]:
    """joblib.dump/load of the variables and dill.dump_module/load_module of the session."""
    cwd = work / "base"
    cwd.mkdir()
    j: dict[str, Any] = {}
    d: dict[str, Any] = {}
    with Kernel(work, NBV_PY, cwd) as k:
        k.run(BASELINE_SETUP)
        k.run(state_cell(s))
        verify_s1 = k.eval(VERIFY)
        for n, (key, src) in enumerate([("first", None), *STEPS], start=1):
            if src is not None:
                k.run(src)
            j[f"{key}_s"] = k.run(f'joblib.dump(_state(), "s{n}.joblib")')
            d[f"{key}_s"] = k.run(f'dill.dump_module("s{n}.dill")')
            j[f"{key}_new"] = j[f"{key}_disk"] = (cwd / f"s{n}.joblib").stat().st_size
            d[f"{key}_new"] = d[f"{key}_disk"] = (cwd / f"s{n}.dill").stat().st_size
        verify_s5 = k.eval(VERIFY)
        j["storage5"] = sum((cwd / f"s{n}.joblib").stat().st_size for n in range(1, 6))
        d["storage5"] = sum((cwd / f"s{n}.dill").stat().st_size for n in range(1, 6))
        j["checkout_s"] = k.run('globals().update(joblib.load("s1.joblib"))')
        if k.eval(VERIFY) != verify_s1:
            raise RuntimeError("joblib.load did not give back the first state")
        d["checkout_s"] = k.run('dill.load_module("s1.dill")')
        if k.eval(VERIFY) != verify_s1:
            raise RuntimeError("dill.load_module did not give back the first state")
        j["peak_mib"] = d["peak_mib"] = k.peak_mib()  # one kernel for both
    for r, load in ((j, 'globals().update(joblib.load("s5.joblib"))'), (d, 'dill.load_module("s5.dill")')):
        with Kernel(work, NBV_PY, cwd, notebook="fresh.ipynb") as k:
            k.run(BASELINE_SETUP)
            r["fresh_restore_s"] = k.run(load)
            if k.eval(VERIFY) != verify_s5:
                raise RuntimeError(f"{load} in a fresh kernel did not give back the last state")
    return {"joblib": j, "dill": d}


def run_big_nbversion(work: Path, s: Size) -> dict[str, Any]:
    repo = work / "nbv-big"
    git_repo(repo)
    r: dict[str, Any] = {}
    with Kernel(work, NBV_PY, repo, {"JPY_SESSION_NAME": str(repo / "bench.ipynb")}) as k:
        k.run("import numpy as np\n%load_ext nbversion")
        k.run(BIG_CELL.format(n=s.big))
        r["big_first_s"] = k.run('%snapshot "big"')
        k.run(BIG_CHANGE)
        before = nbversion_bytes(repo)
        r["big_s"] = k.run('%snapshot "big, 1% changed"')
        r["big_out"] = k.output()
        after = nbversion_bytes(repo)
        r["big_new"], r["big_disk"] = after[0] - before[0], after[1] - before[1]
    return r


def run_big_kishu(work: Path, s: Size) -> dict[str, Any]:
    cwd = work / "kishu-big"
    cwd.mkdir()
    r: dict[str, Any] = {}
    with Kernel(work, KISHU_PY, cwd, kishu_env(work)) as k:
        k.run("import numpy as np")
        k.run(BIG_CELL.format(n=s.big))
        k.silent(f"from kishu import init_kishu; init_kishu({str(k.path)!r})")
        r["big_first_cell_s"] = k.run("pass")
        before = kishu_bytes(k.path)
        r["big_cell_s"] = k.run(BIG_CHANGE)
        after = kishu_bytes(k.path)
        r["big_new"], r["big_disk"] = after[0] - before[0], after[1] - before[1]
    return r


def run_big_joblib(work: Path, s: Size) -> dict[str, Any]:
    """joblib.dump of the array, and the bare cells' times (no tool) to subtract from Kishu's."""
    cwd = work / "joblib-big"
    cwd.mkdir()
    r: dict[str, Any] = {}
    with Kernel(work, NBV_PY, cwd) as k:
        k.run("import numpy as np, joblib")
        k.run(BIG_CELL.format(n=s.big))
        r["big_pass_s"] = k.run("pass")
        r["big_first_s"] = k.run('joblib.dump({"big": big}, "b1.joblib")')
        r["big_change_cell_s"] = k.run(BIG_CHANGE)
        r["big_s"] = k.run('joblib.dump({"big": big}, "b2.joblib")')
        r["big_new"] = r["big_disk"] = (cwd / "b2.joblib").stat().st_size
    return r


# --- one run, and the table ------------------------------------------------------------------


def one_run(s: Size, run: int) -> dict[str, dict[str, Any]]:
    jobs = [
        ("nbversion", run_nbversion), ("kishu", run_kishu), ("baselines", run_baselines),
        ("plain", lambda w, s: run_plain(w, s, NBV_PY)), ("plain_kishu", lambda w, s: run_plain(w, s, KISHU_PY)),
        ("nbversion_big", run_big_nbversion), ("kishu_big", run_big_kishu), ("joblib_big", run_big_joblib),
    ]
    if run % 2:
        jobs.reverse()
    out: dict[str, dict[str, Any]] = {}
    for name, job in jobs:
        work = Path(tempfile.mkdtemp(prefix=f"nbv-bench-kishu-{name}-"))
        try:
            started = time.perf_counter()
            out[name] = job(work, s)
            print(f"  run {run + 1}: {name} done in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return merge(out)


def merge(out: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """One dict per tool; Kishu's step times become (cell with Kishu) - (same cell, no tool)."""
    nbv = {**out["nbversion"], **out["nbversion_big"]}
    kishu = {**out["kishu"], **out["kishu_big"]}
    plain, plain_k, jbig = out["plain"], out["plain_kishu"], out["joblib_big"]
    kishu["first_s"] = kishu["first_cell_s"] - plain_k["pass_s"]
    for key, _ in STEPS:
        kishu[f"{key}_s"] = kishu[f"{key}_cell_s"] - plain_k[f"{key}_cell_s"]
    kishu["big_first_s"] = kishu["big_first_cell_s"] - jbig["big_pass_s"]
    kishu["big_s"] = kishu["big_cell_s"] - jbig["big_change_cell_s"]
    if nbv.get("auto_total_s") is not None:
        nbv["auto_ms"] = (nbv["auto_total_s"] - plain["auto_total_s"]) / len(AUTO_CELLS) * 1000
    kishu["auto_ms"] = (kishu["auto_total_s"] - plain_k["auto_total_s"]) / len(AUTO_CELLS) * 1000
    joblib = {**out["baselines"]["joblib"], **{k: v for k, v in jbig.items() if k.startswith("big_") and "cell" not in k and k != "big_pass_s"}}
    return {"nbversion": nbv, "kishu": kishu, "joblib": joblib, "dill": out["baselines"]["dill"],
            "plain": plain, "plain_kishu": plain_k}


def med(runs: list[dict[str, dict[str, Any]]], tool: str, key: str) -> float | None:
    values = [r[tool].get(key) for r in runs]
    if any(v is None for v in values):
        return None
    return statistics.median(values)


def human(n: float | None) -> str:
    if n is None:
        return "—"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def secs(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}"


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def print_table(runs: list[dict[str, dict[str, Any]]], s: Size, kishu_version: str, quick: bool) -> None:
    def m(tool: str, key: str) -> float | None:
        return med(runs, tool, key)

    state = m("nbversion", "state_bytes")
    col = m("nbversion", "col_bytes")
    full = m("joblib", "first_new")  # one full state, as joblib.dump writes it
    big_bytes = s.big * 8
    # (label, metric key, unit, [(ratio name, ratio value, target limit or None)])
    rows: list[tuple[str, str, str, list[tuple[str, float | None, float | None]]]] = []

    def add(label: str, key: str, kind: str, ratios: list[tuple[str, float | None, float | None]]) -> None:
        rows.append((label, key, kind, ratios))

    nbv_first = m("nbversion", "first_s")
    add("1. first snapshot / checkpoint / dump (s)", "first_s", "s", [
        ("nbversion / joblib.dump", ratio(nbv_first, m("joblib", "first_s")), 1.2),
        ("nbversion / Kishu", ratio(nbv_first, m("kishu", "first_s")), None),
    ])
    for key, label in (("tiny", "2a. `z = np.zeros(3)`"), ("readonly", "2b. `print(arr.shape)`")):
        add(f"{label}: time (s)", f"{key}_s", "s", [
            ("nbversion / its first snapshot", ratio(m("nbversion", f"{key}_s"), nbv_first), 0.05),
            ("nbversion / Kishu", ratio(m("nbversion", f"{key}_s"), m("kishu", f"{key}_s")), None),
        ])
        add(f"{label}: new data bytes", f"{key}_new", "B", [
            ("nbversion / 1 KB", ratio(m("nbversion", f"{key}_new"), 1000), 1.0),
        ])
        add(f"{label}: disk growth", f"{key}_disk", "B", [])
    add("3. `df['a'] *= 2`: time (s)", "df_s", "s", [
        ("nbversion / Kishu", ratio(m("nbversion", "df_s"), m("kishu", "df_s")), None),
    ])
    add(f"3. `df['a'] *= 2`: new data bytes (column: {human(col)})", "df_new", "B", [
        ("nbversion / the column", ratio(m("nbversion", "df_new"), col), 1.2),
        ("Kishu / the column", ratio(m("kishu", "df_new"), col), None),
    ])
    add("3. `df['a'] *= 2`: disk growth", "df_disk", "B", [])
    add(f"4. storage after the five steps (one full state: {human(full)})", "storage5", "B", [
        ("nbversion / one full state", ratio(m("nbversion", "storage5"), full), 1.1),
        ("Kishu / one full state", ratio(m("kishu", "storage5"), full), None),
    ])
    fresh = m("nbversion", "fresh_restore_s")
    add("5a. restore the last step into a fresh kernel (s)", "fresh_restore_s", "s", [
        ("nbversion / joblib.load", ratio(fresh, m("joblib", "fresh_restore_s")), 1.0),
        ("nbversion / Kishu", ratio(fresh, m("kishu", "fresh_restore_s")), 0.25),
    ])
    add("5b. in-kernel checkout back to step 1 (s)", "checkout_s", "s", [
        ("nbversion / joblib.load", ratio(m("nbversion", "checkout_s"), m("joblib", "checkout_s")), None),
        ("nbversion / Kishu", ratio(m("nbversion", "checkout_s"), m("kishu", "checkout_s")), None),
    ])
    plain, plain_k = m("plain", "peak_mib"), m("plain_kishu", "peak_mib")
    add(f"6. kernel peak memory, MiB (no tool: {plain:.0f}, in Kishu's env {plain_k:.0f}; joblib and dill share a kernel)", "peak_mib", "MiB", [
        ("nbversion / no tool", ratio(m("nbversion", "peak_mib"), plain), 1.2),
        ("Kishu / no tool", ratio(m("kishu", "peak_mib"), plain_k), None),
    ])
    add(f"7. {human(big_bytes)} array, 1% changed: re-snapshot time (s)", "big_s", "s", [
        ("nbversion / Kishu", ratio(m("nbversion", "big_s"), m("kishu", "big_s")), None),
        ("nbversion / joblib.dump", ratio(m("nbversion", "big_s"), m("joblib", "big_s")), None),
    ])
    add(f"7. {human(big_bytes)} array, 1% changed: new data bytes", "big_new", "B", [
        ("nbversion / the array", ratio(m("nbversion", "big_new"), big_bytes), 0.03),
        ("Kishu / the array", ratio(m("kishu", "big_new"), big_bytes), None),
    ])
    add("8. automatic mode: overhead per small cell (ms)", "auto_ms", "ms", [
        ("nbversion / Kishu", ratio(m("nbversion", "auto_ms"), m("kishu", "auto_ms")), 0.5),
    ])

    print(f"Machine: {machine()}")
    print(f"Kishu {kishu_version} in benchmarks/.venv-kishu; nbversion from this checkout; "
          f"{'--quick (1/10 sizes); ' if quick else ''}{len(runs)} run{'s' if len(runs) > 1 else ''}, medians")
    print(f"State: {human(state)} in memory ({s.arr:,} float64 array, {s.rows:,}-row DataFrame, "
          f"{s.trees}-tree RandomForest, params dict); joblib.dump of it: {human(full)}\n")
    print("| row | nbversion | Kishu | joblib | dill | ratio | target | met |")
    print("|---|---|---|---|---|---|---|---|")
    for label, key, kind, ratios in rows:
        cells = []
        for tool in ("nbversion", "kishu", "joblib", "dill"):
            v = m(tool, key)
            cells.append(human(v) if kind == "B" else secs(v) if kind == "s" else "—" if v is None else f"{v:.0f}" if kind == "MiB" else f"{v:.1f}")
        if key == "auto_ms" and m("nbversion", key) is None:
            cells[0] = "not available"
        shown = "; ".join(f"{name}: {'—' if v is None else f'{v:.2f}x' if v >= 0.01 or v == 0 else f'{v:.4f}x'}" for name, v, _ in ratios)
        targets = "; ".join(f"≤ {limit:g}x ({name.split(' / ')[1]})" for name, _, limit in ratios if limit is not None)
        met = "; ".join("—" if v is None else "yes" if v <= limit else "no" for _, v, limit in ratios if limit is not None)
        print(f"| {label} | {' | '.join(cells)} | {shown} | {targets} | {met} |")

    print("\nnbversion's own summary lines (last run):")
    last = runs[-1]["nbversion"]
    for key in ("first", *[k for k, _ in STEPS], "big"):
        print(f"  {key}: {last.get(f'{key}_out', '')}")
    print("\nRaw values per run (s, bytes, MiB):\n```")
    keep = ("first_s", "tiny_s", "readonly_s", "df_s", "params_s", "tiny_new", "readonly_new", "df_new", "params_new",
            "storage5", "fresh_restore_s", "checkout_s", "peak_mib", "big_s", "big_new", "auto_ms", "auto_total_s")
    for n, r in enumerate(runs, start=1):
        for tool, values in r.items():
            shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in values.items() if k in keep}
            print(f"run {n} {tool}: {json.dumps(shown)}")
    print("```")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1/10 of every size, for a smoke test")
    args = parser.parse_args()
    if not Path(KISHU_PY).exists():
        sys.exit("Kishu is not installed for the benchmarks: run `make bench-kishu` first")
    try:
        import dill  # noqa: F401  (the dill baseline runs in a .venv kernel)
    except ImportError:
        sys.exit("dill is missing from .venv: run `make bench-kishu` (it installs the `bench` extra)")
    kishu_version = subprocess.run([KISHU_PY, "-c", "import kishu; print(kishu.__version__)"],
                                   capture_output=True, text=True, check=True).stdout.strip()
    s = QUICK if args.quick else FULL
    warm_up_memory(1.0 if args.quick else 6.0)
    runs = []
    for run in range(args.runs):
        runs.append(one_run(s, run))
    print_table(runs, s, kishu_version, args.quick)


if __name__ == "__main__":
    main()
