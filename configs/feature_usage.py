"""DP feature-usage analytics on the embedded synthetic population.

Run:
  .venv/bin/python experiments/analytics.py --config=configs/feature_usage.py --workdir=DIR
For each feature (event type): how many users used it in the last week, released with
TFF's DP sum at each epsilon; writes DIR/analytics.csv, DIR/analytics_summary.csv,
DIR/privacy.json and DIR/figures/analytics_error.png (fl_analytics/analytics.py).
"""

import ml_collections
from ml_collections import config_dict

from fl_analytics.core import config_files


def _churn_config():
  """configs/churn.py, loaded by path (config files are not a package on sys.path)."""
  return config_files.load_sibling(__file__, 'churn.py')


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0  # noise of the repeats is TF Privacy's (unseeded); the population's is data.seed
  c.data = _churn_config().data  # source (synthetic | events:PATH), population, days
  c.clients = ml_collections.ConfigDict()
  c.clients.opt_out = 0.0  # users who opted out are not counted
  c.analytics = ml_collections.ConfigDict()
  c.analytics.window_days = 7  # "used in the last week": the data's last 7 days
  c.analytics.epsilons = (0.1, 0.3, 1.0, 3.0, 10.0)  # on the command line: "(1.0, 2.0)"
  c.analytics.delta = 1e-5
  c.analytics.repeats = 20  # releases per epsilon, to measure the error distribution
  c.analytics.secure_sum = True
  # The session's total budget (epsilon at analytics.delta; unset: none). Each epsilon
  # of analytics.epsilons is then a release charged to DIR/ledger.json, composed with
  # the releases of earlier runs in DIR (fl_analytics/privacy/ledger.py); releases the
  # budget cannot pay for are refused before anything runs.
  c.analytics.budget_epsilon = config_dict.placeholder(float)
  return c
