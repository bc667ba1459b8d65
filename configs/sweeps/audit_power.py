"""The canary audit's power by model size (`make audit-power`, results/audit_power/):
next action's conv (4,314 parameters) and GRU (213,354) models with 1,000 canaries
(and 1,000 unseen) on the vectorized engine, fixed clipping without noise (noise
multiplier 0.001) and at epsilon 2 and 8, at the default learning rates, one seed.
configs/sweeps/audit_power_churn.py is the same on churn's 577 parameters. Every run
writes audit.json with the final-model, all-iterates and first-insertion statistics
(docs/audit.md).
"""

import ml_collections

AUDIT_POWER = {'num_rounds': 40, 'eval_every': 10, 'audit': {'canaries': 1000},
               'runtime': {'engine': 'vectorized'}}
NOISE = ({'dp.noise_multiplier': 0.001}, {'dp.target_epsilon': 2.0},
         {'dp.target_epsilon': 8.0})


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.base_config = 'configs/next_action.py'
  c.base_overrides = AUDIT_POWER
  c.settings = [{'dp.mechanism': 'gaussian_fixed', **model, **noise}
                for model in ({'model.architecture': 'conv'},
                              {'model.architecture': 'gru', 'data.context_gaps': True})
                for noise in NOISE]
  c.seeds = [0]
  return c
