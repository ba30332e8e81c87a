# `make demo` and `make test` set everything up first (idempotent, fast when done).
PYTHON ?= python3
VENV   ?= .venv
# torch's pin, and the index torch alone is taken from (empty: pip's own configuration), e.g.
# make setup TORCH_INDEX=https://download.pytorch.org/whl/cu128 for a CUDA build, .../whl/cpu
# for the CPU-only one. The index is passed to torch's install only: PyTorch's index does not
# carry the other requirements (jieba, opencc, ...).
TORCH  ?= torch==2.13.0
TORCH_INDEX ?=
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.zhbert-setup
# the torch asked for: setup runs again when TORCH or TORCH_INDEX change
TORCH_SPEC := $(VENV)/.zhbert-torch
DEMO   ?= runs/demo
# The demo's recipe: the tiny preset with 1 layer instead of 4, trained for DEMO_MINUTES minutes
# (`train --minutes`: the steps that fit, from this machine's measured step), half of the steps
# at length 16, no dropout, 30% masking (held-out accuracy is always scored at 15%). The recipe's
# ablations (benchmarks/RESULTS.md): a 1,000-step schedule ends at 32.1% held-out MLM where the
# preset as shipped ends at 14.1% ("A demo that leaves the plateau"); half at length 16 beats
# 40% ("Toward 45% in 10 minutes"); in the demo's minutes 1 layer ends above 2 and 2 above 4
# ("Fewer layers, more steps"; "A demo in minutes": 34.1% against 30.5% at 3.75 minutes on the
# slower CPU below, 38.4% at 3,200 steps against 37.0% at 2,000 for the faster one's minutes).
# Minutes, not steps: two CPUs with AVX512-BF16 took 0.114 and 0.205 s a 2-layer step (AMD EPYC
# family 25 model 17 the slower), so 2,000 steps were 4 min 26 s of demo on one and 7 min 36 s
# on the other. DEMO_MINUTES: 3.25 where precision=auto trains in bf16 (a CPU with AMX /
# AVX512-BF16; the demo's other stages and the timing take about a minute more, and a loop
# ran 14% past its budget, 4.0 minutes of 3.5, making a 4 min 57 s demo: 5 minutes in all),
# 7.5 where it trains in fp32 (AVX2 only: 10 minutes). Expanded when the demo runs.
DEMO_MINUTES ?= $(shell $(PY) -c "from zhbert.machine import detect_capabilities as caps; \
  from zhbert.precision import resolve_precision as resolve; \
  print(3.25 if resolve('auto', caps('cpu')).precision == 'bf16' else 7.5)")
DEMO_RECIPE ?= --minutes $(DEMO_MINUTES) --set model.num_layers=1 --set data.warmup_len_fraction=0.5 \
  --set data.mask_prob=0.3 --set model.hidden_dropout=0 --set model.attention_dropout=0

.PHONY: setup demo test test-all clean FORCE

setup: $(STAMP)

# rewritten only when the spec differs, so an unchanged one leaves setup done
$(TORCH_SPEC): FORCE
	@mkdir -p $(VENV)
	@echo '$(TORCH) $(TORCH_INDEX)' | cmp -s - $@ || echo '$(TORCH) $(TORCH_INDEX)' > $@

$(STAMP): requirements.txt pyproject.toml Makefile $(TORCH_SPEC)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@# from an index, torch is reinstalled: pip takes an installed 2.13.0+cpu for ==2.13.0
	$(PY) -m pip install -q $(TORCH) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX) --force-reinstall --no-deps)
	@# the pin again (2.13.0 matches an installed 2.13.0+cu128): no requirement can upgrade torch
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
	$(VENV)/bin/zhbert train --data $(DEMO)/data --out $(DEMO)/tiny --config tiny --force $(DEMO_RECIPE)
	$(VENV)/bin/zhbert status $(DEMO)/tiny
	$(VENV)/bin/zhbert analyze $(DEMO)/tiny --target 0.40 --n-boot 100
	@# five everyday sentences from outside the corpus, with the expected character: its rank
	$(VENV)/bin/zhbert fill-mask $(DEMO)/tiny --input examples/demo_cloze.tsv --top-k 5
	@# how long a run of this recipe must be for 40%, and where a 4,000-step one ends (schedule-aware)
	$(VENV)/bin/zhbert predict $(DEMO)/tiny --target 0.40 --steps 4000 --n-boot 100
	@echo "history: $(DEMO)/tiny/history.jsonl  checkpoints: $(DEMO)/tiny/checkpoints  report: $(DEMO)/tiny/analysis/report.html"

test: setup
	$(PY) -m pytest -q

test-all: setup
	$(PY) -m pytest -q -m ""

clean:
	rm -rf $(VENV) runs .pytest_cache
