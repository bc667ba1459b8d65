r"""Reference values for the matrix-factorization mechanisms, from jax-privacy.

  tools/oracle_venv.sh && .venv-oracle/bin/python tools/mf_reference.py

Runs in the oracle environment (jax-privacy 2.0.0, jax 0.10, dp_accounting 0.6; pinned
in tools/oracle-requirements.txt), which cannot share the project's (TFF 0.87 pins jax
0.4), and writes results/reference_values/jax_privacy_mf.json. For each setting
(n rounds, at most k participations, b apart) it records what jax-privacy's
`matrix_factorization` computes:

* its optimized BLT (`buffered_toeplitz.optimize`, max error): the parameters, the
  Toeplitz coefficients of C and of C^{-1} (`BufferedToeplitz.inverse`), the min-sep
  sensitivity squared (`toeplitz.minsep_sensitivity_squared`), the per-query error
  (`toeplitz.per_query_error`) and the loss;
* its optimized banded Toeplitz strategy with b bands (`toeplitz.
  optimize_banded_toeplitz`, last-iterate error), the same quantities;
* epsilon of the Gaussian mechanism at a few noise multipliers (dp_accounting 0.6,
  RDP and PLD), the event a matrix mechanism is accounted as.

tests/mf_test.py recomputes the deterministic quantities with
fl_analytics.privacy.matrix_factorization from the recorded parameters (1e-6 relative)
and compares its own optimized losses with these.
"""

import json
import os
import sys
import time

import jax

jax.config.update('jax_enable_x64', True)

import dp_accounting  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax_privacy  # pylint: disable=g-import-not-at-top,wrong-import-position
from jax_privacy.matrix_factorization import buffered_toeplitz  # pylint: disable=g-import-not-at-top,wrong-import-position
from jax_privacy.matrix_factorization import toeplitz  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                   'results', 'reference_values', 'jax_privacy_mf.json')
# (n, k, b): small, medium, and Gboard's 2022 schedule (2,000 rounds, 6 times, 313 apart).
SETTINGS = ((64, 4, 16), (200, 3, 50), (2000, 6, 313))
NOISE_MULTIPLIERS = (0.5, 1.0, 4.0)
DELTA = 1e-10


def _floats(x):
  return [float(v) for v in np.asarray(x)]


def _quantities(coefs, noising, n, k, b):
  sens2 = float(toeplitz.minsep_sensitivity_squared(coefs, b, n=n, max_participations=k))
  errors = np.asarray(toeplitz.per_query_error(noising_coef=noising))
  return {'coefs': _floats(coefs), 'noising_coefs': _floats(noising),
          'sensitivity_squared': sens2, 'max_error': float(errors.max()),
          'mean_error': float(errors.mean()), 'loss': sens2 * float(errors.max())}


def blt(n, k, b):
  start = time.perf_counter()
  strategy = buffered_toeplitz.optimize(n=n, min_sep=b, max_participations=k, error='max')
  seconds = time.perf_counter() - start
  coefs = strategy.toeplitz_coefs(n)
  noising = strategy.inverse().toeplitz_coefs(n)
  return {'buf_decay': _floats(strategy.buf_decay),
          'output_scale': _floats(strategy.output_scale), 'seconds': seconds,
          **_quantities(coefs, noising, n, k, b)}


def banded(n, k, b):
  start = time.perf_counter()
  coefs = toeplitz.optimize_banded_toeplitz(n=n, bands=b, reduction_fn=lambda v: v[-1])
  seconds = time.perf_counter() - start
  noising = toeplitz.inverse_coef(coefs, n)
  return {'bands': b, 'seconds': seconds, **_quantities(coefs, noising, n, k, b)}


def gaussian_epsilons():
  out = []
  for z in NOISE_MULTIPLIERS:
    event = dp_accounting.GaussianDpEvent(z)
    rdp = dp_accounting.rdp.RdpAccountant().compose(event).get_epsilon(DELTA)
    pld = dp_accounting.pld.PLDAccountant().compose(event).get_epsilon(DELTA)
    out.append({'noise_multiplier': z, 'delta': DELTA, 'rdp_epsilon': rdp,
                'pld_epsilon': pld})
  return out


def main():
  table = {'source': (f'jax-privacy {jax_privacy.__version__} matrix_factorization, '
                      f'jax {jax.__version__}, dp_accounting (oracle environment: '
                      'tools/oracle_venv.sh), by tools/mf_reference.py'),
           'settings': [], 'gaussian': gaussian_epsilons()}
  for n, k, b in SETTINGS:
    row = {'n': n, 'max_participations': k, 'min_sep': b, 'blt': blt(n, k, b),
           'banded': banded(n, k, b)}
    print(f"n={n} k={k} b={b}: BLT loss {row['blt']['loss']:.6g} "
          f"({len(row['blt']['buf_decay'])} buffers, {row['blt']['seconds']:.1f} s), "
          f"banded loss {row['banded']['loss']:.6g} ({row['banded']['seconds']:.1f} s)",
          flush=True)
    table['settings'].append(row)
  os.makedirs(os.path.dirname(OUT), exist_ok=True)
  tmp = OUT + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(table, f, indent=1)
    f.write('\n')
  os.replace(tmp, OUT)
  print(f'Wrote {OUT}')


if __name__ == '__main__':
  if len(sys.argv) > 1:
    sys.exit(__doc__)
  main()
