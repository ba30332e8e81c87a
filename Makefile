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
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)

demo: setup
	$(VENV)/bin/zhbert prepare builtin --out $(DEMO)/data --force
	$(VENV)/bin/zhbert data report $(DEMO)/data

test: setup
	$(PY) -m pytest -q

test-all: setup
	$(PY) -m pytest -q -m ""

clean:
	rm -rf $(VENV) runs .pytest_cache
