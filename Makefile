# Two commands matter: `make demo` and `make test`. Both create .venv on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export JAX_PLATFORMS ?= cpu
export JAX_COMPILATION_CACHE_DIR ?= $(CURDIR)/.jax_cache

.PHONY: demo test test-fast test-py313 bench docs clean conformance

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) pyproject.toml
	PYTHONWARNINGS=ignore $(PY) -m pip install --quiet -e ".[dev]"  # PYTHONWARNINGS: no setuptools editable-install notice
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m samplax.demo

# Two pytest workers (pytest-xdist), whole files per worker so module fixtures are built once: compiling is most of
# the suite's time and XLA compiles one program on one core, so two workers use CI's two cores.
# TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# The inner loop: everything but the tests marked slow (make test runs those too). Budget: under 5 minutes.
test-fast: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not slow"

# The quick subset marked arviz1 (fit, summary, report, save/load, az.loo, the CLI, a notebook) on Python 3.13 with
# the newest ArviZ (1.x: DataTree, arviz-stats, arviz-plots), in a second venv made from pyenv's interpreter (found
# through `pyenv root`). Without pyenv or its 3.13 it warns and does nothing. Budget: under 5 minutes of tests.
VENV313 := .venv313
PY313 := $(VENV313)/bin/python
STAMP313 := $(VENV313)/.installed
# pyenv from PATH, else from its default root (CI's non-interactive shell may not have run pyenv's shell set-up)
PYENV := $(shell command -v pyenv 2>/dev/null || ls "$${PYENV_ROOT:-$$HOME/.pyenv}/bin/pyenv" 2>/dev/null)
PYENV_PY313 = $(shell [ -n "$(PYENV)" ] && ls -d "$$($(PYENV) root)"/versions/3.13*/bin/python 2>/dev/null | sort -V | tail -n 1)

test-py313:
	@base="$(PYENV_PY313)"; \
	if [ -z "$$base" ]; then \
	  echo "warning: pyenv or its Python 3.13 is missing (pyenv install 3.13), so the ArviZ 1.x subset did not run" >&2; \
	else \
	  $(MAKE) --no-print-directory $(STAMP313) PY313_BASE="$$base" && \
	  $(PY313) -c "import sys, arviz; print('Python', sys.version.split()[0], 'ArviZ', arviz.__version__)" && \
	  $(PY313) -m pytest -q -m arviz1 -p no:cacheprovider; \
	fi

$(STAMP313): pyproject.toml
	@test -n "$(PY313_BASE)" || { echo "run make test-py313" >&2; exit 2; }
	"$(PY313_BASE)" -m venv $(VENV313)
	$(PY313) -m pip install --quiet --upgrade pip
	PYTHONWARNINGS=ignore $(PY313) -m pip install --quiet --upgrade -e ".[dev]"
	@$(PY313) -c "import arviz, sys; sys.exit(int(arviz.__version__.split('.')[0]) < 1)" || \
	  { echo "ArviZ 1.x did not install in $(VENV313): the subset would test ArviZ 0.x again" >&2; exit 1; }
	touch $@

# Every corpus model: samplax nuts against NumPyro NUTS (fails on a mismatch) and the method-support matrix;
# writes docs/conformance.md. Hours on 2 cores: it keeps its progress in .conformance/, and
# `make conformance ARGS=--resume` carries on after an interruption.
conformance: $(STAMP)
	$(PY) -m tests.conformance.run $(ARGS)

bench: $(STAMP)
	$(PY) -m benchmarks.run

# The site, with the notebooks rendered with their outputs: docs/hooks/notebooks.py executes each notebook (small
# sizes) unless `make test` already saved its executed copy in docs/notebooks/ (git-ignored).
docs: $(STAMP)
	PYTHONWARNINGS=ignore $(PY) -m pip install --quiet -e ".[docs]"
	$(PY) -m mkdocs build --strict

clean:
	rm -rf $(VENV) $(VENV313) .jax_cache .pytest_cache site
