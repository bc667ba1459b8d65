"""The audit sweep behind results/audit/: the reference settings with canaries.

Adaptive and fixed clipping at the reference budgets, DP-FTRL tree aggregation and
distributed Skellam at two of them, and fixed clipping with almost no noise (noise
multiplier 0.001, where the canaries should be plainly visible), and three points whose
users' updates are too small to hide the canaries, two seeds, on the
default churn config with `audit.canaries=100` (and 100 unseen). Every run writes
`audit.json`; the sweep's summary puts the estimated epsilon beside the claimed one and
`figures/audit.png` draws them.

Run: `make audit` (sweep, plots, and export of the small files to results/audit).
There is no non-private reference: plain FedAvg does not clip, so it has no canaries.
"""

import ml_collections

BUDGETS = (0.5, 1.0, 2.0, 4.0, 8.0)


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.base_config = 'configs/churn.py'
  c.base_overrides = {'num_rounds': 40, 'eval_every': 5, 'audit': {'canaries': 100}}
  c.settings = (
      [{'dp.mechanism': 'gaussian_fixed', 'dp.noise_multiplier': 0.001}]
      + [{'dp.mechanism': mechanism, 'dp.target_epsilon': eps}
         for mechanism in ('gaussian_adaptive', 'gaussian_fixed') for eps in BUDGETS]
      + [{'dp.mechanism': 'tree', 'sampling': 'shuffle', 'dp.target_epsilon': eps}
         for eps in (2.0, 8.0)]
      + [{'dp.mechanism': 'distributed', 'sampling': 'fixed_size',
          'dp.target_epsilon': eps} for eps in (2.0, 8.0)]
      # Canaries in plain view: users' updates 100 times smaller (client learning rate
      # 0.001), so each round's delta is the canaries and the noise. The audit's power
      # where the users do not hide the canaries (the model barely trains).
      + [{'dp.mechanism': 'gaussian_fixed', 'client.learning_rate': 0.001, **noise}
         for noise in ({'dp.noise_multiplier': 0.001}, {'dp.target_epsilon': 1.0},
                       {'dp.target_epsilon': 4.0})])
  c.seeds = [0, 1]
  return c
