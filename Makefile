# make demo | make test | make bench | make train-jax | make notebooks -- each creates .venv and installs the pinned set if needed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test bench train-jax notebooks venv clean

venv: $(STAMP)

$(STAMP): requirements-lock.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements-lock.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py

test: $(STAMP)
	LOWPREC_NB_QUICK=1 $(PY) -m pytest -q -n 2 tests --nbmake notebooks

notebooks: $(STAMP)
	$(PY) notebooks/build.py

train-jax: $(STAMP)
	$(PY) examples/fp4_training_jax.py

bench: $(STAMP)
	$(PY) benchmarks/bench_round.py
	$(PY) benchmarks/bench_blocks.py
	$(PY) benchmarks/bench_matmul.py
	$(PY) benchmarks/bench_jax.py
	$(PY) benchmarks/bench_torch.py

clean:
	rm -rf $(VENV) build *.egg-info
