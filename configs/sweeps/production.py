"""What would our production setup cost? The mechanisms production can run, against
DP-FedAvg with Poisson sampling, behind results/production/.

Next-action prediction (configs/next_action.py's convolutional model, 17,691
parameters) on the calibrated population (`data.generator=app_paths`), 10^4 users
(8,000 enrolled for training), 200 rounds of 200 clients:

* DP-FedAvg, fixed clipping, Poisson sampling (q = 1/40): the simulation-only baseline,
  since production cannot sample devices independently;
* on (k, b)-participation (`sampling=min_separation`: 40 groups in turn, so each user
  takes part at most k = 5 times, 40 rounds apart), with the same fixed clip:
  DP-FTRL with one tree over the run (`tree`), banded matrix factorization with 40
  bands (`banded`), and BLT-DP-FTRL (`blt`);

each calibrated to epsilon in {0.5, 1, 2, 4, 8} at delta = 1e-7, two seeds, and the
non-private reference. Every point runs on the `vectorized` engine.

A point takes about 54 s here (200 rounds at 0.13-0.18 s): the 16 points at epsilon 0.5
and 1 took 7.5 minutes, two at a time, so the 42 take about 20 minutes. Production's
size (10^5 users, 1,000 rounds of 1,000 clients) is five times the rounds at five
times the cohort: some 12 minutes a point if the round time grows with the cohort
(not measured), 9 hours for the sweep. This is the same
question at a fifth of the rounds and cohort.

Run: `make production` (sweep, plots, the equal-utility table, export to
results/production).
"""

import ml_collections

BUDGETS = (0.5, 1.0, 2.0, 4.0, 8.0)
ROUNDS, COHORT, USERS, MIN_SEPARATION = 200, 200, 10_000, 40
# The schedule's mechanisms, and the baseline on Poisson sampling.
MECHANISMS = (('gaussian_fixed', 'poisson'), ('tree', 'min_separation'),
              ('banded', 'min_separation'), ('blt', 'min_separation'))


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.base_config = 'configs/next_action.py'
  c.base_overrides = {
      'num_rounds': ROUNDS, 'eval_every': 20, 'clients_per_round': COHORT,
      'data': {'generator': 'app_paths', 'num_users': USERS},
      'participation': {'min_separation': MIN_SEPARATION},
      'dp': {'delta': 1e-7},
      'evaluation': {'max_users': 1000, 'final_max_users': 2000,
                     'personalization_steps': 0}}
  c.settings = [{'dp.mechanism': 'none'}] + [
      {'dp.mechanism': mechanism, 'sampling': sampling, 'dp.target_epsilon': eps}
      for mechanism, sampling in MECHANISMS for eps in BUDGETS]
  c.seeds = [0, 1]
  return c
