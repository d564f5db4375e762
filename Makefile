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

# The main job on its embedded default recipe (sr_edge/recipe/default.toml): prune and
# quantise with short fine-tunes, benchmark every bundle with the peers, report, and pick a
# model per device and budget, into results/run/ (index.md first). Re-runs reuse finished stages.
run: setup
	$(VENV)/bin/sr-edge run --out results/run

test: setup
	$(PY) -m ruff check sr_edge tests benchmarks docs/studies setup.py
	$(PY) -m sr_edge.backends.typecheck
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info
