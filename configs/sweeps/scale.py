"""The frontier by population size behind results/scale/: how big must an app be for
epsilon = 1 to be nearly free?

Adaptive-clipping DP-FedAvg (Andrew et al. 2021) calibrated to epsilon in
{0.25, 0.5, 1, 2, 4} at delta = 1e-7 (below 1 / population for every population here,
so all share one delta), and the non-private reference, for synthetic populations of
10^3, 10^4, 10^5 and 10^6 users (80% enrolled for training), two seeds, 40 rounds.

Cohorts grow with the app: 50 of 800 training users (q = 1/16, the reference sweep's
cohort), 200 of 8,000 (q = 1/40), 1,000 of 80,000 (q = 1/80) and 5,000 of 800,000
(q = 1/160), the size of production DP cohorts (Gboard's are 6,500). Every point runs on
the `vectorized` engine (TFF's round with the cohort's local training as one computation,
checked against the `mapreduce` engine in tests/vectorized_test.py), on which a round of
5,000 new users takes about half a second here. 40 rounds as in every other committed
sweep: at 10^6 users they touch about a fifth of the users. At 10^3 users two budgets
are not run, and the figure shows them missing: epsilon = 0.25 needs a noise multiplier
of 8.2, above what adaptive clipping allows at 50 clients (0.1 * cohort = 5; 12.8 against
8 at 80 clients), and epsilon = 0.5 (noise multiplier 4.21) diverges (train loss above
ten times chance; seeds 0 and 1 after 32 and 28 rounds, measured 2026-11-29).

Evaluation is bounded as at any scale: per round on 1,000 held-out users, the final
evaluation on 2,000 (evaluation.max_users / final_max_users), without personalization
(about 10 ms per user here, which at the default 10,000 users would add two minutes to
every run; the question here is the global model's AUC).

Run: `make scale` (sweep, plots, export to results/scale). Runtime here: docs/performance.md.
"""

import ml_collections

BUDGETS = (0.25, 0.5, 1.0, 2.0, 4.0)
# users -> clients per round
POPULATIONS = {1_000: 50, 10_000: 200, 100_000: 1_000, 1_000_000: 5_000}
# (users, epsilon) not run: beyond adaptive clipping at that cohort, or diverging.
NOT_RUN = {(1_000, 0.25), (1_000, 0.5)}


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.base_config = 'configs/churn.py'
  c.base_overrides = {'num_rounds': 40, 'eval_every': 5, 'dp': {'delta': 1e-7},
                      'evaluation': {'max_users': 1000, 'final_max_users': 2000,
                                     'personalization_steps': 0},
                      'runtime': {'engine': 'vectorized'}}
  c.settings = []
  for users, cohort in POPULATIONS.items():
    population = {'data.num_users': users, 'clients_per_round': cohort}
    c.settings.append({**population, 'dp.mechanism': 'none'})
    c.settings += [{**population, 'dp.mechanism': 'gaussian_adaptive',
                    'dp.target_epsilon': eps}
                   for eps in BUDGETS if (users, eps) not in NOT_RUN]
  c.seeds = [0, 1]
  return c
