r"""DP feature-usage analytics: flags and a config in, releases and their errors out.

  .venv/bin/python experiments/analytics.py --config=configs/feature_usage.py \
      --workdir=DIR [--config.KEY=VALUE ...]

Writes DIR/analytics.csv (epsilon, repeat, feature, true_value, dp_value, error),
DIR/analytics_summary.csv, DIR/privacy.json and DIR/figures/analytics_error.{png,pdf}.
Bad settings or a bad event file stop with exit code 2 and a message, before anything
is written. With --config.analytics.budget_epsilon=B, DIR/ledger.json keeps the
session's budget: each epsilon is a release charged to it, and releases it cannot pay
for (with those of earlier runs in DIR) are refused, naming what is spent.
"""

import os
import time

from absl import flags
from absl import logging
from ml_collections import config_flags
# TensorFlow before app.run starts main() (see fl_analytics/training.py).
import tensorflow as tf  # pylint: disable=unused-import

from fl_analytics.core import cli
from fl_analytics.analytics import feature_usage
from fl_analytics.privacy import ledger as ledger_lib
from fl_analytics.reporting import plots
from fl_analytics.data import clients
from fl_analytics.data import devices
from fl_analytics.data import generators
from fl_analytics.core import rundir
from fl_analytics.data import synthetic

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Output directory (created if missing).')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  del argv  # cli.parse_flags refuses positional arguments
  config = _CONFIG.value
  try:  # every input checked before the data is read or anything is written
    rundir.check_writable_directory(_WORKDIR.value)
    clients.check_data_config(config.data)
    devices.check_fraction('clients.opt_out', config.clients.opt_out)
    logs, origin, num_days, note = clients.load_logs(config.data, seed=config.data.seed)
    logs, num_opted_out = clients.without_opted_out(logs, config.clients.opt_out,
                                                    seed=config.data.seed)
    feature_usage.check_analytics_config(config.analytics, num_users=len(logs))
    ledger = _charge_budget(config.analytics, num_users=len(logs))
  except ValueError as e:  # the checks' one-line refusals, and the budget's
    cli.fail(e)
  end = origin + num_days * synthetic.SECONDS_PER_DAY
  vocabulary = generators.vocabulary(config.data)
  vectors = feature_usage.usage_vectors(logs, end_timestamp=end,
                                        window_days=config.analytics.window_days,
                                        vocabulary=vocabulary)
  logging.info('%s; %d users counted (%d opted out).', note, len(logs), num_opted_out)
  t0 = time.monotonic()
  total = len(config.analytics.epsilons) * config.analytics.repeats

  def progress(epsilon, repeat):
    done = list(config.analytics.epsilons).index(epsilon) * config.analytics.repeats + repeat
    if repeat == config.analytics.repeats:
      logging.info('epsilon %g: %d releases (%d/%d, %.0f s)', epsilon, repeat, done,
                   total, time.monotonic() - t0)

  releases = feature_usage.run(vectors, epsilons=list(config.analytics.epsilons),
                           delta=config.analytics.delta, repeats=config.analytics.repeats,
                           secure_sum=config.analytics.secure_sum, progress=progress)
  os.makedirs(_WORKDIR.value, exist_ok=True)
  summary = feature_usage.write_results(
      _WORKDIR.value, vectors.sum(axis=0), releases, delta=config.analytics.delta,
      num_users=len(logs), secure_sum=config.analytics.secure_sum,
      window_days=config.analytics.window_days, vocabulary=vocabulary,
      ledger=ledger.to_json() if ledger else None)
  plots.analytics_error(_WORKDIR.value)
  print(f'Users who used each feature in the last {config.analytics.window_days} days, '
        f'{len(logs)} users, delta {config.analytics.delta:g}:')
  for s in summary:
    print(f"  epsilon {s['epsilon']:<6g} noise stddev {s['noise_stddev']:8.2f}  measured "
          f"RMSE {s['rmse']:8.2f}  mean relative error {100 * s['mean_relative_error']:.1f}%")
  print(f'Results in {_WORKDIR.value}/: {feature_usage.RESULTS_FILE}, {feature_usage.SUMMARY_FILE}, '
        f'{feature_usage.PRIVACY_FILE}, figures/analytics_error.png')


def _charge_budget(analytics, *, num_users: int):
  """The session's ledger with this run's releases charged (None without a budget)."""
  if analytics.get('budget_epsilon') is None:
    return None
  ledger = ledger_lib.Ledger(_WORKDIR.value, epsilon=analytics.budget_epsilon,
                             delta=analytics.delta)
  entries = [ledger_lib.Entry(f'feature_usage epsilon={e:g}',
                              feature_usage.noise_multiplier_for(
                                  e, delta=analytics.delta, num_users=num_users))
             for e in analytics.epsilons]
  ledger.check(entries)  # before the directory is made
  os.makedirs(_WORKDIR.value, exist_ok=True)
  ledger.charge(entries)
  return ledger


if __name__ == '__main__':
  cli.run(main, known=(rundir.RunDirectoryError,), log_dir=lambda: _WORKDIR.value)
