#!/usr/bin/env bash
# Makes .venv-oracle: jax-privacy in an environment of its own (it needs jax >= 0.8,
# TFF 0.87 pins jax 0.4), used only to generate the reference values that the tests
# compare with (tools/mf_reference.py). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
VENV=.venv-oracle
STAMP=$VENV/.installed
if [[ -f $STAMP && $STAMP -nt tools/oracle-requirements.txt ]]; then exit 0; fi
test -x $VENV/bin/python || "$PYTHON" -m venv $VENV
$VENV/bin/pip install --quiet --upgrade pip
$VENV/bin/pip install --quiet -r tools/oracle-requirements.txt
$VENV/bin/python -c 'import jax_privacy.matrix_factorization, dp_accounting'
touch $STAMP
