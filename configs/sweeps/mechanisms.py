"""The DP mechanisms of sampled and cyclic cohorts on one frontier: adaptive and fixed
clipping (Poisson sampling), DP-FTRL tree aggregation (cyclic passes) and distributed
Skellam over secure aggregation (fixed-size cohorts), each calibrated to four privacy
budgets, two seeds, and the non-private reference, on the default churn config (32 runs
of 40 rounds). The mechanisms of the production schedules (one tree over the run,
banded MF, BLT) are compared in configs/sweeps/production.py.

Distributed Skellam is not run at epsilon = 1: the general amplification bound it needs
calibrates to a noise multiplier of about 63 there (the Gaussian with the same
fixed-size cohorts: about 7), and with it both seeds diverged within six rounds (train
loss above ten times chance; measured 2026-11-29 on the 800-user population).

Run: `make mechanisms` (sweep, plots, and export of the small files to
results/mechanisms). Each mechanism is accounted for the sampling it runs with (see the
docs/privacy.md), so the epsilons are comparable as guarantees, not as
sampling schemes.
"""

import ml_collections

BUDGETS = (1.0, 2.0, 4.0, 8.0)
SAMPLING = {'gaussian_adaptive': 'poisson', 'gaussian_fixed': 'poisson',
            'tree': 'shuffle', 'distributed': 'fixed_size'}
# (mechanism, epsilon) whose noise makes training diverge (see above).
DIVERGES = {('distributed', 1.0)}


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.base_config = 'configs/churn.py'
  c.base_overrides = {'num_rounds': 40, 'eval_every': 5}
  c.settings = [{'dp.mechanism': 'none'}] + [
      {'dp.mechanism': mechanism, 'sampling': sampling, 'dp.target_epsilon': eps}
      for mechanism, sampling in SAMPLING.items()
      for eps in BUDGETS if (mechanism, eps) not in DIVERGES
  ]
  c.seeds = [0, 1]
  return c
