"""What several test files share: a tiny run's config, through the real overrides."""

import os

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


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Model variants a task's config offers besides its default, tested like it.
VARIANTS = {'next_action': {'gru': {'model.architecture': 'gru', 'data.context_gaps': True,
                                    'model.gru_units': 16, 'model.embedding_dim': 8}},
            'churn': {'logistic': {'model.hidden_units': 0}}}


def task_config(task: str, variant: str = 'default', **overrides):
  """A tiny config of `task` (and of its model `variant`, `VARIANTS`):
  `configs/TASK.py` if there is one (a task's own keys), else the base config with
  `task` set."""
  path = os.path.join(REPO, 'configs', f'{task}.py')
  base = config_files.load(path) if os.path.exists(path) else None
  return tiny_config(base=base, **{'task': task, **VARIANTS.get(task, {}).get(variant, {}),
                                   **overrides})
