"""The canary audit's power on churn's 577-parameter model (`make audit-power`,
results/audit_power/churn/): configs/sweeps/audit_power.py's settings of the conv model,
without its model keys, on configs/churn.py.
"""

import ml_collections

from fl_analytics.core import config_files


def get_config() -> ml_collections.ConfigDict:
  power = config_files.load_sibling(__file__, 'audit_power.py')
  c = ml_collections.ConfigDict()
  c.base_config = 'configs/churn.py'
  c.base_overrides = power.base_overrides.to_dict()
  c.settings = [{k: v for k, v in dict(s).items() if not k.startswith(('model.', 'data.'))}
                for s in power.settings if dict(s)['model.architecture'] == 'conv']
  c.seeds = [0]
  return c
