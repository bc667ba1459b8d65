"""The demo sweep: a few privacy budgets of adaptive-clipping DP-FedAvg, two seeds, and
the non-private reference, on the default churn config.

Run (what `make demo` does, plots included):
  .venv/bin/python experiments/sweep.py --config=configs/sweeps/demo.py --workdir=runs/demo
Runtime and results on this 2-core machine: the README (measured with `make demo`).
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.base_config = 'configs/churn.py'
  c.base_overrides = {'num_rounds': 40, 'eval_every': 5}
  c.settings = [{'dp.mechanism': 'none'}] + [
      {'dp.mechanism': 'gaussian_adaptive', 'dp.target_epsilon': eps}
      for eps in (0.5, 2.0, 8.0)
  ]
  c.seeds = [0, 1]
  return c
