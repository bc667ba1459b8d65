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
REFERENCE_RUNS ?= runs/reference
PARALLEL ?=

.PHONY: browser setup test test-fast docs tutorial demo reproduce mechanisms compression analytics next_action production mf-reference audit-reference export audit audit-mechanisms audit-power scale bench bench-scale bench-ray bench-generators bench-secagg population clean-runs
MECHANISM_RUNS ?= runs/mechanisms
COMPRESSION_RUNS ?= runs/compression
NEXT_ACTION_RUNS ?= runs/next_action
PRODUCTION_RUNS ?= runs/production
EXPORT_RUNS ?= runs/export
AUDIT_RUNS ?= runs/audit
SCALE_RUNS ?= runs/scale
ANALYTICS_RUNS ?= runs/analytics

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
	$(PY) -c 'import tensorflow_federated, dp_accounting, tensorflow_privacy, ml_collections, matplotlib, pyarrow, ray, pytest_timeout, nbclient, cryptography'
	touch $(STAMP)

# The whole suite, what CI runs (.ci/run).
test: setup browser
	$(PY) -m pytest tests --durations=15

# The inner loop: every unit and contract test, without the end-to-end runs, Ray and
# TFF's C++ worker (pytest markers slow, ray, cpp); under 2 minutes here.
test-fast: setup
	$(PY) -m pytest tests -m 'not slow and not ray and not cpp' --durations=10

# The configuration reference, generated from the config files' comments
# (tests/config_reference_test.py fails when it is stale).
docs: setup
	$(PY) experiments/config_reference.py --output=docs/configuration.md

# $(1): a sweep config, $(2): its run directory. Runs the sweep, then its plots.
define sweep_and_plot
	$(PY) experiments/sweep.py --config=$(1) --workdir=$(2) $(if $(PARALLEL),--parallel=$(PARALLEL))
	$(PY) experiments/plot.py --workdir=$(2)
endef

# $(1): a sweep's run directory, $(2): where its small files are committed.
define export_small_files
	$(PY) experiments/export_reference.py --workdir=$(1) --reference=$(2)
endef

# docs/tutorial.ipynb executed in place, its outputs from the full version (a few
# minutes; tests/tutorial_test.py runs its fast version).
tutorial: setup
	FL_TUTORIAL_FAST= $(VENV)/bin/jupyter-execute --inplace docs/tutorial.ipynb
	# TensorFlow's start-up notices (stderr) and the cells' timing metadata are not kept.
	$(PY) -c 'import nbformat as n; b = n.read("docs/tutorial.ipynb", 4); 	[(c.metadata.pop("execution", None), c.__setitem__("outputs", [o for o in c.outputs if o.get("name") != "stderr"])) for c in b.cells if c.cell_type == "code"]; 	n.write(b, "docs/tutorial.ipynb")'

# A small privacy sweep (3 budgets x 2 seeds + the non-private reference) and its plots.
demo: setup
	$(call sweep_and_plot,configs/sweeps/demo.py,$(DEMO_DIR))

# Regenerates results/reference/ from scratch: the reference sweep, its plots, and the
# small files that are committed.
reproduce: setup
	rm -rf $(REFERENCE_RUNS)
	$(call sweep_and_plot,configs/sweeps/reference.py,$(REFERENCE_RUNS))
	$(call export_small_files,$(REFERENCE_RUNS),results/reference)

# Every DP mechanism on one frontier (configs/sweeps/mechanisms.py), exported to
# results/mechanisms/.
mechanisms: setup
	$(call sweep_and_plot,configs/sweeps/mechanisms.py,$(MECHANISM_RUNS))
	$(call export_small_files,$(MECHANISM_RUNS),results/mechanisms)

# Uniform quantization of the updates: bytes sent per client against held-out AUC
# (configs/sweeps/compression.py), exported to results/compression/.
compression: setup
	$(call sweep_and_plot,configs/sweeps/compression.py,$(COMPRESSION_RUNS))
	$(call export_small_files,$(COMPRESSION_RUNS),results/compression)

# What production's mechanisms cost (configs/sweeps/production.py): DP-FedAvg with
# Poisson sampling, and tree, banded MF and BLT on (k, b)-participation, three budgets,
# two seeds; the frontier and the epsilon each needs at the tree's utility, exported to
# results/production/.
production: setup
	$(call sweep_and_plot,configs/sweeps/production.py,$(PRODUCTION_RUNS))
	$(PY) experiments/plot.py --workdir=$(PRODUCTION_RUNS) --equal_utility=tree
	$(call export_small_files,$(PRODUCTION_RUNS),results/production)

# jax-privacy's matrix-factorization values the tests compare with
# (results/reference_values/jax_privacy_mf.json), from its own virtualenv (.venv-oracle,
# tools/oracle_venv.sh: it needs a newer jax than TFF allows); about 2 minutes.
mf-reference:
	tools/oracle_venv.sh
	.venv-oracle/bin/python tools/mf_reference.py

# jax-privacy's audit statistics on seeded canary scores (tools/audit_reference.py), in
# the oracle virtualenv: results/reference_values/jax_privacy_audit.json.
audit-reference:
	tools/oracle_venv.sh
	.venv-oracle/bin/python tools/audit_reference.py

# Next-action prediction across privacy budgets (configs/sweeps/next_action.py),
# exported to results/next_action/.
next_action: setup
	$(call sweep_and_plot,configs/sweeps/next_action.py,$(NEXT_ACTION_RUNS))
	$(call export_small_files,$(NEXT_ACTION_RUNS),results/next_action)

# A federated analytics session at 10^6 users (configs/analytics.py): every query
# released under one budget, the accuracy study against PipelineDP, the report and its
# screenshot in headless Chromium, in results/analytics/ (about 21 minutes here).
analytics: setup browser
	rm -rf $(ANALYTICS_RUNS)
	$(PY) experiments/analytics.py --config=configs/analytics.py --workdir=$(ANALYTICS_RUNS)
	rm -rf results/analytics && mkdir -p results/analytics
	cp $(ANALYTICS_RUNS)/{analytics.csv,accuracy.csv,privacy.json,ledger.json} results/analytics/
	$(PY) experiments/analytics_report.py --workdir=results/analytics \
	    --screenshot=results/analytics/report.png

# Headless Chromium from Debian's packages (tools/install_browser.sh; nothing when present).
browser:
	tools/install_browser.sh

# The white-box audit of every registered mechanism and of the sabotaged aggregators
# (configs/audit_mechanisms.py, about 15 minutes): results/audit/mechanisms/.
audit-mechanisms: setup
	$(PY) experiments/audit_mechanisms.py --config=configs/audit_mechanisms.py \
	    --output=results/audit/mechanisms

# The canary audit's power by model size (configs/sweeps/audit_power.py and
# audit_power_churn.py: 1,000 canaries, no noise and epsilon 2 and 8; about 12 minutes):
# results/audit_power/.
AUDIT_POWER_RUNS ?= runs/audit_power
audit-power: setup
	$(call sweep_and_plot,configs/sweeps/audit_power.py,$(AUDIT_POWER_RUNS)/next_action)
	$(call export_small_files,$(AUDIT_POWER_RUNS)/next_action,results/audit_power/next_action)
	$(call sweep_and_plot,configs/sweeps/audit_power_churn.py,$(AUDIT_POWER_RUNS)/churn)
	$(call export_small_files,$(AUDIT_POWER_RUNS)/churn,results/audit_power/churn)
	$(PY) experiments/plot_audit_power.py --reference=results/audit_power

# The empirical privacy audit of the reference settings (configs/sweeps/audit.py): every
# run with 100 canaries, audit.json beside privacy.json, the estimated-against-claimed
# figure; exported to results/audit/.
audit: setup
	$(call sweep_and_plot,configs/sweeps/audit.py,$(AUDIT_RUNS))
	$(call export_small_files,$(AUDIT_RUNS),results/audit)

# The frontiers by population size on the calibrated population: churn with a small and
# a large model, 10^4 to 10^6 users (configs/sweeps/scale.py, results/scale/), and next
# action, 10^4 to 10^6 users (configs/sweeps/scale_next_action.py,
# results/scale_next_action/); adaptive clipping at five budgets and the non-private
# reference, two seeds.
scale: setup
	$(call sweep_and_plot,configs/sweeps/scale.py,$(SCALE_RUNS))
	$(call export_small_files,$(SCALE_RUNS),results/scale)
	$(call sweep_and_plot,configs/sweeps/scale_next_action.py,$(SCALE_RUNS)_next_action)
	$(call export_small_files,$(SCALE_RUNS)_next_action,results/scale_next_action)

# Shipping the model: one DP run per task at epsilon 2 (the default configs otherwise),
# exported to TensorFlow Lite with its parity, size and latency, in results/export/.
# A finished run is not trained again.
export: setup
	$(PY) experiments/train.py --config=configs/churn.py --workdir=$(EXPORT_RUNS)/churn --config.dp.target_epsilon=2
	$(PY) experiments/export_model.py --workdir=$(EXPORT_RUNS)/churn --output=results/export/churn
	$(PY) experiments/train.py --config=configs/next_action.py --workdir=$(EXPORT_RUNS)/next_action --config.dp.target_epsilon=2
	$(PY) experiments/export_model.py --workdir=$(EXPORT_RUNS)/next_action --output=results/export/next_action

# Seconds per round of the pipeline against the plain-TensorFlow floor, sweep throughput
# and memory (about 4 minutes; BENCH_ARGS='--memory_rounds=1000' adds the long run).
bench: setup
	$(PY) experiments/benchmark.py --json=runs/benchmark.json $(BENCH_ARGS)

# Population and cohort scale (experiments/benchmark.py --scale): time to the first
# round, peak memory and round time at 10^4-10^6 users; ms per client at 100-5,000
# clients against the plain-TF floor and the arithmetic bound; the engines per model,
# cohort and mechanism with their FLOP and memory-traffic bounds; a 10^7-event file.
# About 30 minutes here (--scale_sections picks tables).
bench-scale: setup
	$(PY) experiments/benchmark.py --scale --rounds=10 --json=results/benchmark/scale.json

# The app_paths population measured beside published statistics of real apps
# (experiments/calibrate_population.py): the table, results/population/.
population: setup
	$(PY) experiments/calibrate_population.py --generator=app_paths --users=5000 --workdir=results/population

# The behaviour models' cost per user (experiments/benchmark.py --generators), against
# the budget of 0.2 ms per user made 1,000 at a time.
bench-generators: setup
	$(PY) experiments/benchmark.py --generators --json=results/benchmark/generators.json

# Ray on this machine (experiments/benchmark.py --ray): a local two-node cluster's
# start-up and per-task overhead, a sweep here against on Ray, rounds at 1,000 and
# 5,000 clients in one process against on Ray actors.
bench-ray: setup
	$(PY) experiments/benchmark.py --ray --rounds=5 --sweep_points=4 --json=results/benchmark/ray.json

# What SecAgg+ costs (experiments/benchmark.py --secagg, benchmarks/secagg.py): bytes,
# device and server CPU per cohort (100-5,000) and model, against the wire format and
# the operation counts; a round of churn at 1,000 clients over it (about 5 minutes).
bench-secagg: setup
	$(PY) experiments/benchmark.py --secagg --engine_rounds=3 --json=results/benchmark/secagg.json

clean-runs:
	rm -rf runs
