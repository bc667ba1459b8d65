"""Next-action prediction on one frontier: adaptive clipping calibrated to three privacy
budgets, two seeds, and the non-private reference, on configs/next_action.py (8 runs of
40 rounds).

Run: `make next_action` (sweep, plots, and export of the small files to
results/next_action). The summary and the frontier report top-3 and top-1 accuracy.
"""

import ml_collections

BUDGETS = (1.0, 4.0, 16.0)


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.base_config = 'configs/next_action.py'
  c.base_overrides = {'num_rounds': 40, 'eval_every': 5}
  c.settings = [{'dp.mechanism': 'none'}] + [
      {'dp.mechanism': 'gaussian_adaptive', 'dp.target_epsilon': eps} for eps in BUDGETS]
  c.seeds = [0, 1]
  return c
