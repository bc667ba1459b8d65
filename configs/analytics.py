"""A federated analytics session on the app_paths population: every query, one budget.

Run:
  .venv/bin/python experiments/analytics.py --config=configs/analytics.py --workdir=DIR
  [--config.analytics.queries=funnel,retention] [--config.data.num_users=10000]
Releases each query of analytics.queries once at its epsilon (analytics.epsilon.NAME),
charged to the session's budget in DIR/ledger.json; writes DIR/analytics.csv,
DIR/privacy.json, with accuracy.enabled DIR/accuracy.csv, and DIR/report.html with its
figures (fl_analytics/analytics/, docs/analytics.md). `make analytics` runs it at these
settings into results/analytics/.
"""

import ml_collections

from fl_analytics.analytics import heavy_hitters
from fl_analytics.analytics import queries
from fl_analytics.core import config_files


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0  # the heavy hitters' noise and the devices' record sampling
  c.data = config_files.load_sibling(__file__, 'churn.py').data  # source, days, skews
  c.data.generator = 'app_paths'  # the realistic population (docs/data.md)
  c.data.num_users = 1_000_000
  c.clients = ml_collections.ConfigDict()
  c.clients.opt_out = 0.0  # users who opted out take no part
  c.analytics = ml_collections.ConfigDict()
  # Queries of the session, comma-separated: feature_usage, funnel, retention,
  # session_length, sessions_per_day, heavy_hitters.
  c.analytics.queries = ('feature_usage,funnel,retention,session_length,'
                         'sessions_per_day,heavy_hitters')
  # Each query's epsilon (one release each, at analytics.delta).
  c.analytics.epsilon = ml_collections.ConfigDict({
      'feature_usage': 0.5, 'funnel': 0.5, 'retention': 0.5, 'session_length': 0.5,
      'sessions_per_day': 0.5, 'heavy_hitters': 1.0})
  # Each query's settings: its contribution bound and what it asks (the defaults of
  # fl_analytics/analytics/queries.py and heavy_hitters.py; docs/analytics.md), e.g.
  # --config.analytics.settings.funnel.steps="('search_open','search_query')".
  c.analytics.settings = ml_collections.ConfigDict({
      **{name: dict(q.defaults) for name, q in queries.REGISTRY.items()},
      heavy_hitters.NAME: dict(heavy_hitters.DEFAULTS)})
  c.analytics.delta = 1e-8  # below 1 / number of users
  c.analytics.budget_epsilon = 4.0  # the session's total (PLD composition at delta)
  c.analytics.accountant = 'pld'  # pld | rdp
  # users: one TFF client per user (up to ~10^4 users); groups: one per group of
  # analytics.group_size users, the same noise (fl_analytics/analytics/release.py).
  c.analytics.engine = 'groups'
  c.analytics.group_size = 1000
  c.accuracy = ml_collections.ConfigDict()
  c.accuracy.enabled = True  # the error study beside the session (simulation only)
  c.accuracy.users = (10_000, 100_000, 1_000_000)  # nested: the first N users
  c.accuracy.epsilons = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
  c.accuracy.repeats = 5  # fresh noise per repeat, to measure the error
  c.accuracy.central_max_users = 100_000  # PipelineDP runs up to this many users
  c.accuracy.central_repeats = 2
  return c
