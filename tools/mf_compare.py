r"""Prints this project's optimized matrix-factorization strategies beside jax-privacy's.

  .venv/bin/python tools/mf_compare.py

For each setting of results/reference_values/jax_privacy_mf.json (tools/mf_reference.py):
the BLT and banded losses (sens^2 x max error) jax-privacy's optimizers found and those
of fl_analytics.privacy.matrix_factorization, the number of buffers, the time each took,
and the loss of independent noise (C = I). docs/privacy.md quotes its table.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fl_analytics.privacy import matrix_factorization as mf  # pylint: disable=g-import-not-at-top,wrong-import-position

REFERENCE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         'results', 'reference_values', 'jax_privacy_mf.json')


def main():
  with open(REFERENCE) as f:
    reference = json.load(f)
  print('| (n, k, b) | BLT loss: jax-privacy / here (buffers) | banded loss: jax-privacy '
        '/ here | C = I | seconds: jax-privacy BLT, banded / here BLT, banded |')
  print('|---|---|---|---|---|')
  for row in reference['settings']:
    n, k, b = row['n'], row['max_participations'], row['min_sep']
    start = time.perf_counter()
    blt = mf.optimize_blt(n, b, k)
    blt_seconds = time.perf_counter() - start
    start = time.perf_counter()
    banded = mf.optimize_banded(n, b, b, k)
    banded_seconds = time.perf_counter() - start
    theirs = row['blt']
    print(f"| ({n}, {k}, {b}) | {theirs['loss']:.5g} ({len(theirs['buf_decay'])}) / "
          f"{blt.loss:.5g} ({len(blt.buf_decay)}) | {row['banded']['loss']:.5g} / "
          f"{banded.loss:.5g} | {mf.identity(n, b, k).loss:,.0f} | "
          f"{theirs['seconds']:.1f}, {row['banded']['seconds']:.1f} / "
          f"{blt_seconds:.2f}, {banded_seconds:.2f} |")


if __name__ == '__main__':
  main()
