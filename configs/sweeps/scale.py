"""The frontier by population size behind results/scale/: churn on the calibrated
population (`data.generator=app_paths`), a small and a large model, from 10^4 to 10^6
users. Where does epsilon start to cost utility, and does model size change it?

Adaptive-clipping DP-FedAvg (Andrew et al. 2021) calibrated to epsilon in
{0.5, 1, 2, 4, 8} at delta = 1e-7 (below 1 / population for every population here,
so all share one delta), and the non-private reference, for 10^4, 10^5 and 10^6 users
(80% enrolled for training), two seeds, 40 rounds. Two models: the default MLP
(`model.hidden_units=32`: 2,593 parameters on app_paths' 79 churn features) and one of
about 10^5 (`model.hidden_units=1280`: 103,681 parameters), the size of the models apps
train, up to 10^5 users (`LARGE_MODEL_MAX_USERS`).

The clip tracks the 0.9 quantile of update norms (`dp.target_unclipped_quantile`),
not the default median: at the median, measured at 10^4 users with either model, held-out
AUC was the same at epsilon 1 and 8 (0.833 and 0.833 with 32 units, 0.854 and 0.854 with
1,280, against 0.896 and 0.901 without DP): the clipped updates' bias, not the noise, set
the gap, and the frontier would have said nothing about epsilon.

Cohorts grow with the app: 200 of 8,000 training users (q = 1/40), 1,000 of 80,000
(q = 1/80) and 5,000 of 800,000 (q = 1/160), the size of production DP cohorts
(Gboard's are 6,500). Every point runs on the `vectorized` engine. Evaluation is bounded
as at any scale: per round on 1,000 held-out users, the final evaluation on 2,000,
without personalization.

Run: `make scale` (this sweep and configs/sweeps/scale_next_action.py, plots, export to
results/scale and results/scale_next_action). Runtime here: docs/performance.md.
"""

import ml_collections

BUDGETS = (0.5, 1.0, 2.0, 4.0, 8.0)
# users -> clients per round
POPULATIONS = {10_000: 200, 100_000: 1_000, 1_000_000: 5_000}
HIDDEN_UNITS = (32, 1280)
# (users, hidden units, epsilon) not run: diverged (train loss above ten times chance;
# seeds 0 and 1 at rounds 40 and 35, `make scale`).
NOT_RUN = {(10_000, 1280, 0.5)}
# The large model stops at 10^5 users: when these results were made, the vectorized
# engine stacked 5,000 clients' copies of its 10^5 weights at once (2 GB a copy,
# several copies), and two such runs at a time were killed for memory after their
# first round (41.5 s). The engine now trains in chunks within
# runtime.vectorized_memory_mb (5,000 clients of this model: 2,186 MiB peak,
# docs/performance.md); the 10^6 points are still to be run.
LARGE_MODEL_MAX_USERS = 100_000
# Shared with configs/sweeps/scale_next_action.py.
BASE_OVERRIDES = {'num_rounds': 40, 'eval_every': 5,
                  'data': {'generator': 'app_paths'},
                  'dp': {'delta': 1e-7, 'target_unclipped_quantile': 0.9},
                  'evaluation': {'max_users': 1000, 'final_max_users': 2000,
                                 'personalization_steps': 0}}


def settings(populations, hidden_units) -> list[dict]:
  """The non-private reference and each budget, per population and model size."""
  out = []
  for users, cohort in populations.items():
    for units in hidden_units:
      if units > min(hidden_units) and users > LARGE_MODEL_MAX_USERS:
        continue
      point = {'data.num_users': users, 'clients_per_round': cohort,
               'model.hidden_units': units}
      out.append({**point, 'dp.mechanism': 'none'})
      out += [{**point, 'dp.mechanism': 'gaussian_adaptive', 'dp.target_epsilon': eps}
              for eps in BUDGETS if (users, units, eps) not in NOT_RUN]
  return out


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.base_config = 'configs/churn.py'
  c.base_overrides = {**BASE_OVERRIDES, 'runtime': {'engine': 'vectorized'}}
  c.settings = settings(POPULATIONS, HIDDEN_UNITS)
  c.seeds = [0, 1]
  return c
