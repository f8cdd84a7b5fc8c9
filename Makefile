# `make train` and `make test` create the environment (.venv) on first use, then do their job.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: install train test test-package test-notebooks lab serve benchmark benchmark-smoke clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "lenet needs Python 3.11 or newer: install it, or run make PYTHON=python3.11")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

train: install  ## train with the default config; pass flags with ARGS="--epochs 5"
	$(PY) -m lenet.train $(ARGS)

test: test-package test-notebooks  ## the whole suite: package tests, then the notebooks under nbval

test-package: install
	$(PY) -m pytest tests $(ARGS)

# One thread: the thread count changes the order of float sums and so the exact training path; the
# quick-mode claims the notebooks assert were checked single-threaded, which also keeps them steady
# on a busy machine.
test-notebooks: install
	LENET_QUICK=1 OMP_NUM_THREADS=1 $(PY) -m pytest --nbval-lax notebooks/ -p no:cacheprovider

lab: install  ## open JupyterLab on the notebooks
	$(VENV)/bin/jupyter lab notebooks/

benchmark: install  ## the side-by-side speed benchmark; writes a markdown table
	$(PY) benchmarks/benchmark.py $(ARGS)

benchmark-smoke: install
	$(PY) benchmarks/benchmark.py --smoke

clean:
	rm -rf $(VENV) build *.egg-info

serve: install  ## the prediction server with its drawing page on http://127.0.0.1:8000/
	$(VENV)/bin/lenet-serve $(ARGS)
