"""The reference sweep behind results/reference/ and the README's frontier figure:
adaptive and fixed clipping at five privacy budgets, three seeds, and the non-private
reference, on the default churn config (33 runs of 40 rounds).

Run: `make reproduce` (sweep, plots, and export of the small files to results/reference).
Runtime on this 2-core machine: docs/results.md (measured with `make reproduce`).
"""

import ml_collections

BUDGETS = (0.5, 1.0, 2.0, 4.0, 8.0)


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.base_config = 'configs/churn.py'
  c.base_overrides = {'num_rounds': 40, 'eval_every': 5}
  c.settings = [{'dp.mechanism': 'none'}] + [
      {'dp.mechanism': mechanism, 'dp.target_epsilon': eps}
      for mechanism in ('gaussian_adaptive', 'gaussian_fixed')
      for eps in BUDGETS
  ]
  c.seeds = [0, 1, 2]
  return c
