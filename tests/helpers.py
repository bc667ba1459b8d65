"""What several test files share: a tiny run's config, through the real overrides."""

from configs import churn
from fl_analytics.core import config_files

# A run small enough for a test: two rounds on 150 users.
TINY = {'num_rounds': 2, 'eval_every': 1, 'clients_per_round': 20, 'data.num_users': 150,
        'data.num_days': 40, 'data.stride_days': 3, 'dp.noise_multiplier': 1.0}


def tiny_config(base=None, **overrides):
  """`base` (default: the churn config) at `TINY`, with `overrides` (dotted keys; an
  unknown key raises, as on the command line)."""
  return config_files.apply_overrides(churn.get_config() if base is None else base,
                                      {**TINY, **overrides}, source='tiny_config')
