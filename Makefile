# make demo | make test | make bench | make train-jax | make notebooks -- each creates .venv and installs the pinned set if needed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test bench train-jax notebooks venv clean test-gpu tensor-cores

venv: $(STAMP)

$(STAMP): requirements-lock.txt pyproject.toml
	@echo "installing the pinned set into $(VENV) (first time only, about 2 minutes)..."
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check -r requirements-lock.txt
	@$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

demo: $(STAMP)
	@$(PY) examples/demo.py

test: $(STAMP)
	@echo "running the tests on 2 workers (compiling kernels on first use; about 10 minutes from cold)..."
	LOWPREC_NB_QUICK=1 $(PY) -m pytest -q -n 2 tests --nbmake notebooks

# on a machine with an NVIDIA GPU and CUDA builds of torch, Triton and JAX already installed
# (the pinned set here is CPU-only): the kernel tests natively, and the tensor-core measurement
test-gpu:
	LOWPREC_TEST_DEVICE=cuda PYTHONPATH=. $(PYTHON) -m pytest -q tests/test_triton.py tests/test_jax_pallas.py

tensor-cores:
	PYTHONPATH=. $(PYTHON) gpu/tensor_cores.py --out tensor_core_data
	PYTHONPATH=. $(PYTHON) gpu/streams.py

notebooks: $(STAMP)
	$(PY) notebooks/build.py

train-jax: $(STAMP)
	$(PY) examples/fp4_training_jax.py

bench: $(STAMP)
	$(PY) benchmarks/bench_cold.py
	$(PY) benchmarks/bench_round.py
	$(PY) benchmarks/bench_blocks.py
	$(PY) benchmarks/bench_matmul.py
	$(PY) benchmarks/bench_jax.py
	$(PY) benchmarks/bench_torch.py
	$(PY) benchmarks/bench_jax_training.py
	$(PY) benchmarks/bench_jax_training.py --scan
	$(PY) benchmarks/bench_jax_training.py --d 1024 --depths 8

clean:
	rm -rf $(VENV) build *.egg-info
