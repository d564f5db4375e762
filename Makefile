# Two entry points (see README): `make run` and `make test`. Both create the virtual
# environment on first use: torch 2.13.0 pinned (the CPU build), then sr-edge with its extras.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: setup run test lint typecheck clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[train,openvino,bench,video,dev]'
	# tensorrt-stubs declares a dependency on tensorrt itself, which is not on PyPI for this
	# machine; the stubs alone are what mypy needs.
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps 'tensorrt-stubs>=10,<11'
	rm -f $(VENV)/.installed-* && touch $@

setup: $(STAMP)

# The main job on its embedded default (no dataset needed): the shipped models' quality on
# scikit-image's bundled photos, then a quick quality-vs-latency benchmark of the committed
# bundles on this machine's device profile (results/, with the report and Pareto plot).
run: setup
	$(VENV)/bin/sr-edge eval bicubic ecbsr-m4c16 fsrcnn espcn --scale 2 3 4
	$(VENV)/bin/sr-edge bench --quick --dataset samples --out results/bench.json --overwrite --report

test: setup
	$(PY) -m ruff check sr_edge tests benchmarks docs/studies setup.py
	$(PY) -m sr_edge.backends.typecheck
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info
