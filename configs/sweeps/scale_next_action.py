"""The next-action frontier by population size behind results/scale_next_action/: the
calibrated population (`data.generator=app_paths`), 10^4, 10^5 and 10^6 users.

Adaptive clipping calibrated to epsilon in {0.5, 1, 2, 4, 8} and the non-private
reference, with the populations, cohorts, delta, clip quantile, rounds and evaluation
of configs/sweeps/scale.py, on configs/next_action.py's convolutional model (17,691
parameters over app_paths' 59 actions), two seeds.

The 10^4 and 10^5 points ran on the `mapreduce` engine; the 10^6 points (5,000 clients
per round) on `vectorized`, which the default engine (`auto`) picks for this model.

Run: `make scale`.
"""

import ml_collections

from fl_analytics.core import config_files

POPULATIONS = (10_000, 100_000, 1_000_000)


def get_config() -> ml_collections.ConfigDict:
  scale = config_files.load_sibling(__file__, 'scale.py')
  c = ml_collections.ConfigDict()
  c.base_config = 'configs/next_action.py'
  c.base_overrides = scale.base_overrides.to_dict()
  del c.base_overrides['runtime']  # the default engine (these results: mapreduce)
  # scale.py's points of these populations, without its model sizes (churn's).
  c.settings = [{k: v for k, v in s.items() if k != 'model.hidden_units'}
                for s in scale.settings if s['data.num_users'] in POPULATIONS
                and s['model.hidden_units'] == scale.settings[0]['model.hidden_units']]
  c.seeds = [0, 1]
  return c
