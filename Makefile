# `make demo` and `make test` set everything up first (idempotent, fast when done).
PYTHON ?= python3
VENV   ?= .venv
# Override for a CUDA build, e.g. make setup TORCH="torch==2.13.0 --index-url ..."
TORCH  ?= torch==2.13.0
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.zhbert-setup
DEMO   ?= runs/demo

.PHONY: setup demo test test-all clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -r requirements.txt $(TORCH)
	$(PY) -m pip install -q "setuptools>=64"
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	@# Browser tests of the dashboard drive Debian's chromium (never a downloaded browser);
	@# without it (no root, no apt) they skip and say why.
	@command -v chromium >/dev/null 2>&1 || (apt-get install -y -q chromium >/dev/null 2>&1 || \
	  (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1)) || \
	  echo "note: chromium not installed; the dashboard's browser tests will skip"
	@touch $(STAMP)

# The main job on the built-in corpus: data -> report -> train tiny -> study.
# The report's thresholds are set for the built-in corpus (77K sentences,
# ~5K characters); the seed's own (100K / 10K) fail on it, honestly.
demo: setup
	$(VENV)/bin/zhbert prepare builtin --out $(DEMO)/data --force
	$(VENV)/bin/zhbert data report $(DEMO)/data --min-sentences 50000 --min-vocab 4000
	$(VENV)/bin/zhbert train --data $(DEMO)/data --out $(DEMO)/run --config tiny --force
	$(VENV)/bin/zhbert status $(DEMO)/run
	$(VENV)/bin/zhbert analyze $(DEMO)/run
	@# how long a run of this preset must be for 30% / 40% (schedule-aware: the demo's lr ends at 0)
	$(VENV)/bin/zhbert predict $(DEMO)/run --target 0.30 --n-boot 100
	$(VENV)/bin/zhbert predict $(DEMO)/run --target 0.40 --n-boot 100
	@echo "history: $(DEMO)/run/history.jsonl  checkpoints: $(DEMO)/run/checkpoints  report: $(DEMO)/run/analysis/report.html"

test: setup
	$(PY) -m pytest -q

test-all: setup
	$(PY) -m pytest -q -m ""

clean:
	rm -rf $(VENV) runs .pytest_cache
