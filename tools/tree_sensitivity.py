r"""Computes tree aggregation's worst-case squared sensitivities and keeps them.

  .venv/bin/python tools/tree_sensitivity.py 2000,6,313 [STEPS,K,B ...]

Each STEPS,K,B (rounds, at most K participations, at least B rounds apart in TF
Privacy's convention) is computed with TF Privacy's `compute_zcdp_single_tree`
(`fl_analytics.privacy.accounting.compute_tree_sensitivity_square_sum`; minutes at
production sizes) and added to fl_analytics/privacy/tree_sensitivity.json, which the
accountant reads instead of computing again. tests/privacy_test.py recomputes the
small entries and checks the Gboard entry against its published epsilon.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fl_analytics.privacy import accounting  # pylint: disable=g-import-not-at-top,wrong-import-position


def main(settings):
  path = accounting.TREE_SENSITIVITY_FILE
  table = {'source': ('tensorflow_privacy tree_aggregation_accountant.'
                      'compute_zcdp_single_tree(1.0, steps, k, b) * 2, by '
                      'tools/tree_sensitivity.py'), 'values': {}}
  if os.path.exists(path):
    with open(path) as f:
      table = json.load(f)
  for setting in settings:
    try:
      steps, k, b = (int(v) for v in setting.split(','))
    except ValueError:
      sys.exit(f'Each setting is STEPS,K,B (integers). Found {setting!r}.')
    start = time.perf_counter()
    value = accounting.compute_tree_sensitivity_square_sum(steps, k, b)
    table['values'][f'{steps},{k},{b}'] = value
    print(f'{steps},{k},{b}: {value:g} ({time.perf_counter() - start:.1f} s)', flush=True)
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(table, f, indent=1, sort_keys=True)
    f.write('\n')
  os.replace(tmp, path)


if __name__ == '__main__':
  if len(sys.argv) < 2:
    sys.exit(__doc__)
  main(sys.argv[1:])
