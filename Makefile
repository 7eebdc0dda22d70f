# mogviewer: `make run` opens the app on the bundled sample galaxy, `make test` runs the suite.
# Both create .venv and install the project into it first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test bench lint clean venv screenshots

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m mogviewer

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen PYQTGRAPH_QT_LIB=PyQt5 $(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/bench_render.py
	$(PY) benchmarks/bench_fit.py

screenshots: $(STAMP)
	$(PY) -m mogviewer.gui.screenshots docs/screenshots

lint: $(STAMP)
	$(VENV)/bin/ruff check mogviewer tests benchmarks scripts

clean:
	rm -rf $(VENV) build *.egg-info
