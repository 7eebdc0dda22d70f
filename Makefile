# mogviewer: `make run` opens the app on the bundled sample galaxy, `make test` runs the fast
# suite (< 5 min), `make test-all` adds the slow proofs. Each creates .venv and installs the
# project into it first (the app with the gui extra, the tests with the test extra).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TESTENV := QT_QPA_PLATFORM=offscreen PYQTGRAPH_QT_LIB=PyQt5
# the suite's two halves run side by side on a 2-core machine (pytest-xdist, one process per
# test file so module fixtures are computed once)
XDIST := -n 2 --dist loadfile
# the kernels compiled once, by two processes, before the suite: otherwise both of its
# processes compile the same kernels side by side (a fresh clone's suite took 4 min, not 2)
COMPILE := $(PY) -m mogviewer compile --jobs 2 --quiet

.PHONY: run test test-all bench lint clean clean-numba screenshots

$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	touch $@

$(VENV)/.installed-gui: pyproject.toml $(VENV)/.created
	$(PY) -m pip install --quiet -e '.[gui]'
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.created
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

run: $(VENV)/.installed-gui
	$(PY) -m mogviewer

test: $(VENV)/.installed-test
	$(COMPILE)
	$(TESTENV) $(PY) -m pytest -q $(XDIST)

test-all: $(VENV)/.installed-test
	$(COMPILE)
	$(TESTENV) $(PY) -m pytest -q $(XDIST) -m ''

bench: $(VENV)/.installed-test
	$(PY) benchmarks/bench_render.py
	$(PY) benchmarks/bench_fit.py
	$(PY) benchmarks/bench_fit_peers.py
	$(PY) benchmarks/bench_scene.py
	$(PY) benchmarks/bench_sampling.py

screenshots: $(VENV)/.installed-test
	$(PY) -m mogviewer.gui.screenshots docs/screenshots

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check mogviewer tests benchmarks scripts

clean: clean-numba
	rm -rf $(VENV) build *.egg-info

# every cached kernel, deleted (mogviewer deletes them itself when a kernel source changes:
# mogviewer/_numba_cache.py, drop_stale)
clean-numba:
	find mogviewer -path '*/__pycache__/*' \( -name '*.nbi' -o -name '*.nbc' \) -delete
