# fl-analytics: `make demo` runs the main job, `make test` runs the tests. Both set up
# .venv first (idempotent: nothing is reinstalled unless the requirements changed).
SHELL := /bin/bash
# Quiet TensorFlow's C++ start-up chatter (CUDA, oneDNN notices) in every command.
export TF_CPP_MIN_LOG_LEVEL ?= 2
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TFF_VERSION := 0.87.0
DEMO_DIR ?= runs/demo

.PHONY: setup test demo clean-runs

setup: $(STAMP)

$(STAMP): requirements.txt requirements.lock setup.py
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if (3, 9) <= v <= (3, 11) else "fl-analytics needs Python 3.9-3.11 (TFF $(TFF_VERSION)); found %d.%d. Set PYTHON=/path/to/python3.11." % v)'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -c requirements.lock
	# TFF's own pins ask for jaxlib==0.4.14, which the registry does not serve:
	# its other pins come from requirements.txt, TFF itself without dependencies.
	$(PY) -m pip install --quiet --no-deps tensorflow-federated==$(TFF_VERSION)
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -c 'import tensorflow_federated, dp_accounting, tensorflow_privacy, ml_collections, matplotlib'
	touch $(STAMP)

test: setup
	$(PY) -m pytest tests

demo: setup
	$(PY) experiments/train.py --config=configs/churn.py --workdir=$(DEMO_DIR)

clean-runs:
	rm -rf runs
