"""Every DP mechanism on one frontier: adaptive and fixed clipping (Poisson sampling),
DP-FTRL tree aggregation (cyclic passes) and distributed Skellam over secure aggregation
(fixed-size cohorts), each calibrated to four privacy budgets, two seeds, and the
non-private reference, on the default churn config (34 runs of 40 rounds).

Run: `make mechanisms` (sweep, plots, and export of the small files to
results/mechanisms). Each mechanism is accounted for the sampling it runs with (see the
README's Privacy section), so the epsilons are comparable as guarantees, not as
sampling schemes.
"""

import ml_collections

BUDGETS = (1.0, 2.0, 4.0, 8.0)
SAMPLING = {'gaussian_adaptive': 'poisson', 'gaussian_fixed': 'poisson',
            'tree': 'shuffle', 'distributed': 'fixed_size'}


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.base_config = 'configs/churn.py'
  c.base_overrides = {'num_rounds': 40, 'eval_every': 5}
  c.settings = [{'dp.mechanism': 'none'}] + [
      {'dp.mechanism': mechanism, 'sampling': sampling, 'dp.target_epsilon': eps}
      for mechanism, sampling in SAMPLING.items()
      for eps in BUDGETS
  ]
  c.seeds = [0, 1]
  return c
