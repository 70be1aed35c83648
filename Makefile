# make demo: set up .venv from pyproject.toml and run notebooks/quickstart.ipynb, then
# notebooks/tutorial.ipynb, each in a real kernel in a scratch repository under build/.
# make test: set up .venv from pyproject.toml and run the test suite.
# The virtualenv is refreshed whenever pyproject.toml changes.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test test-full bench bench-peers bench-kishu venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) scripts/demo.py

test: $(STAMP)
	$(PY) -m pytest -q

# Everything, including the slow fault sweeps (1 GiB kill sweep, 4 GB values): ~15 minutes.
test-full: $(STAMP)
	NBVERSION_ORACLE=full $(PY) -m pytest -q -m ''

bench: $(STAMP) bench-peers bench-kishu
	$(PY) benchmarks/bench_array.py
	$(PY) benchmarks/bench_files.py
	$(PY) benchmarks/bench_catalog.py
	$(PY) benchmarks/bench_remote.py
	$(PY) benchmarks/bench_kishu.py

# The peers we measure against live in their own environments, never in .venv.
bench-peers: benchmarks/.venv-dvc/bin/dvc

benchmarks/.venv-dvc/bin/dvc:
	$(PYTHON) -m venv benchmarks/.venv-dvc
	benchmarks/.venv-dvc/bin/pip install --quiet dvc dvc-s3

# Kishu, the notebook-checkpoint peer, with what its kernels run (bench_kishu.py launches them from
# this environment); the `bench` extra (dill, for the dill.dump_session baseline) into .venv.
bench-kishu: benchmarks/.venv-kishu/bin/kishu $(VENV)/.bench-stamp

benchmarks/.venv-kishu/bin/kishu:
	$(PYTHON) -m venv benchmarks/.venv-kishu
	benchmarks/.venv-kishu/bin/pip install --quiet kishu numpy pandas scikit-learn joblib dill ipykernel

$(VENV)/.bench-stamp: $(STAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	touch $@

clean:
	rm -rf $(VENV) build .pytest_cache
