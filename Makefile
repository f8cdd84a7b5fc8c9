# `make train`, `make lab` and `make test` create the environment (.venv) on first use, install what they need,
# then do their job: `make install` (and every target a learner uses) the package and the notebooks' packages,
# `make serve` the server's, the test targets the test tools (.[dev], every extra included).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=
# Where pip gets torch and torchvision first, e.g. https://download.pytorch.org/whl/cpu for the CPU-only
# wheels (a few hundred MB instead of several GB of CUDA libraries); empty: PyPI's default build.
TORCH_INDEX ?=
# Two torch processes at once (a notebook beside `make train`, the tests beside anything) share the cores instead of
# spinning for them; `import lenet` sets the same, this also covers a kernel that imports torch first.
ifeq ($(origin OMP_WAIT_POLICY),undefined)
export GOMP_SPINCOUNT ?= 10000
endif

.PHONY: install train test test-fast test-floors test-package test-notebooks notebooks lab tensorboard serve benchmark benchmark-smoke clean

install: $(VENV)/.installed-notebooks  ## the package and what the notebooks need (no test tools)

# The environment itself, with torch from TORCH_INDEX when it is given (before anything pulls PyPI's build).
$(VENV)/.created:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "lenet needs Python 3.11 or newer: install it, or run make PYTHON=python3.11")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(if $(TORCH_INDEX),$(PY) -m pip install --quiet torch torchvision --index-url $(TORCH_INDEX))
	touch $@

# One stamp per extra of pyproject.toml: .installed-notebooks, .installed-serve, .installed-dev; each is installed
# again when pyproject.toml changes.
$(VENV)/.installed-%: pyproject.toml $(VENV)/.created
	$(PY) -m pip install --quiet -e '.[$*]'
	touch $@

train: install  ## train with the default config; pass flags with ARGS="--epochs 5"
	$(PY) -m lenet.cli.train $(ARGS)

test: test-package test-notebooks  ## the whole suite: package tests, then the notebooks under nbval

# The tier to run while editing: no training beyond a few steps on tiny data, no servers, no browser (under a
# minute on 2 cores). The markers are registered in pyproject.toml.
FAST := not slow and not server and not browser and not real_mnist
test-fast: $(VENV)/.installed-dev  ## the quick tier of the package tests, under a minute
	$(PY) -m pytest tests -m "$(FAST)" -p no:cacheprovider $(ARGS)

# The fast tier on the lowest versions pyproject.toml allows (torch 2.5.0, numpy 1.26.0, ...), installed at once by
# uv's lowest-direct resolution into a throwaway environment; CI runs it (about two minutes, most of it installing).
FLOORS ?= /tmp/lenet-floors
test-floors:  ## the fast tier on the lowest dependency versions pyproject.toml allows, in a throwaway venv
	rm -rf $(FLOORS)
	$(PYTHON) -m venv $(FLOORS)
	$(FLOORS)/bin/python -m pip install --quiet uv
	$(FLOORS)/bin/uv pip install --quiet --python $(FLOORS)/bin/python --resolution lowest-direct -e '.[dev]'
	$(FLOORS)/bin/python -m pytest tests -m "$(FAST)" -p no:cacheprovider $(ARGS)

test-package: $(VENV)/.installed-dev
	$(PY) -m pytest tests $(ARGS)

# Quick mode, with the thread count a user gets (no OMP_NUM_THREADS pin): the claims the notebooks
# assert hold for any thread count, so CI may add `OMP_NUM_THREADS=1 make test-notebooks` as well.
test-notebooks: $(VENV)/.installed-dev  ## the notebooks under nbval, in quick mode (LENET_QUICK=1)
	LENET_QUICK=1 $(PY) -m pytest --nbval-lax notebooks/ -p no:cacheprovider

notebooks: install  ## re-execute every notebook in full mode and store its outputs (each states its time)
	for notebook in notebooks/[0-9]*.ipynb; do \
		echo "$$notebook"; $(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace "$$notebook" || exit 1; \
	done

lab: install  ## open JupyterLab on the notebooks; pass flags with ARGS="--allow-root --port 8889"
	$(VENV)/bin/jupyter lab notebooks/ $(ARGS)

tensorboard: install  ## TensorBoard on every run under runs/ (the notebooks' too), on http://localhost:6006/
	$(VENV)/bin/tensorboard --logdir runs $(ARGS)

benchmark: install  ## the side-by-side speed benchmark; writes a markdown table
	$(PY) benchmarks/benchmark.py $(ARGS)

benchmark-smoke: install
	$(PY) benchmarks/benchmark.py --smoke

clean:
	rm -rf $(VENV) build *.egg-info

serve: $(VENV)/.installed-serve  ## the prediction server with its drawing page on http://127.0.0.1:8000/
	$(VENV)/bin/lenet-serve $(ARGS)
