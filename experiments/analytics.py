r"""A federated analytics session: queries released under one budget, and a report.

  .venv/bin/python experiments/analytics.py --config=configs/analytics.py \
      --workdir=DIR [--config.analytics.queries=funnel,retention] [--config.KEY=VALUE]

Charges every query's release to DIR/ledger.json (the session's budget; a session that
would exceed it is refused before anything runs, naming what is spent and left), then
writes DIR/analytics.csv, DIR/privacy.json, with accuracy.enabled DIR/accuracy.csv, and
DIR/report.html with DIR/figures/. Bad settings stop with exit code 2 and one line.
"""

import math
import os
import time

from absl import flags
from absl import logging
from ml_collections import config_flags
import numpy as np
# TensorFlow before app.run starts main() (see fl_analytics/runs/training.py).
import tensorflow as tf  # pylint: disable=unused-import

from fl_analytics.analytics import accuracy
from fl_analytics.analytics import gather
from fl_analytics.analytics import heavy_hitters as hh
from fl_analytics.analytics import queries
from fl_analytics.analytics import release
from fl_analytics.analytics import session
from fl_analytics.core import cli
from fl_analytics.core import rundir
from fl_analytics.data import clients
from fl_analytics.data import devices
from fl_analytics.data import generators
from fl_analytics.privacy import ledger as ledger_lib
from fl_analytics.reporting import analytics_report

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Output directory (created if missing).')
_QUERIES = flags.DEFINE_string(
    'queries', None, 'The session\'s queries, comma-separated (overrides '
    'analytics.queries of the config).')
flags.mark_flags_as_required(['config', 'workdir'])


def _prepare(config):
  """Every input checked, the budget charged: (source, users, population, specs,
  ledger). Raises ValueError with a one-line reason."""
  a = config.analytics
  if _QUERIES.value is not None:
    a.queries = _QUERIES.value
  rundir.check_writable_directory(_WORKDIR.value)
  clients.check_data_config(config.data)
  devices.check_fraction('clients.opt_out', config.clients.opt_out)
  if a.engine not in release.ENGINES:
    raise ValueError(f'analytics.engine must be one of {", ".join(release.ENGINES)}. '
                     f'Found {a.engine!r}.')
  if not (isinstance(a.group_size, int) and a.group_size >= 1):
    raise ValueError(f'analytics.group_size must be a positive integer. Found '
                     f'{a.group_size!r}.')
  source = clients.load_source(config.data, seed=config.data.seed)
  users = np.setdiff1d(np.arange(source.num_users, dtype=np.int64),
                       devices.opted_out(source.num_users, config.clients.opt_out,
                                         seed=config.data.seed))
  if not len(users) or not 0 < a.delta < 1 / len(users):
    raise ValueError(f'analytics.delta={a.delta:g} must be in (0, 1 / number of users '
                     f'= {1 / max(len(users), 1):.3g}); {len(users)} users take part.')
  pop = queries.Population(generators.vocabulary(config.data), source.origin_timestamp,
                           source.num_days, seed=config.seed)
  names = session.query_names(a.queries)
  specs = session.specs_of(a, names, pop)
  ledger = ledger_lib.Ledger(_WORKDIR.value, epsilon=a.budget_epsilon, delta=a.delta,
                             accountant=a.accountant)
  entries = session.ledger_entries(a, names)
  ledger.check(entries)  # refused here, before the directory is made
  return source, users, pop, specs, ledger, entries


def main(argv):
  del argv  # cli.parse_flags refuses positional arguments
  config = _CONFIG.value
  a = config.analytics
  try:
    source, users, pop, specs, ledger, entries = _prepare(config)
  except ValueError as e:  # the checks' one-line refusals, and the budget's
    cli.fail(e)
  os.makedirs(_WORKDIR.value, exist_ok=True)
  ledger.charge(entries)  # charged before the releases run
  logging.info('%s; %d users take part; the session has spent epsilon %.3g of %g.',
               source.note, len(users), ledger.spent, ledger.epsilon)
  keep = len(users) if a.engine == 'users' else 0
  if config.accuracy.enabled:
    keep = max(keep, min(config.accuracy.central_max_users, len(users)))
  # Chunks that end at every population size of the accuracy study.
  chunk = math.gcd(10_000, *(config.accuracy.users if config.accuracy.enabled else ()))
  t0 = time.monotonic()
  g = gather.gather(source.logs, users, specs, pop, group_size=a.group_size,
                    keep_users=keep, chunk=chunk, progress=lambda n, s: logging.info(
                        'devices: %d/%d users (%.0f s)', n, len(users), s))
  rng = np.random.default_rng()  # the heavy hitters' noise: secret, unseeded
  results = []
  for name, s in specs.items():
    eps = session.epsilon_of(a, name)
    if name == hh.NAME:
      results.append(session.release_heavy_hitters(s, g, epsilon=eps, delta=a.delta,
                                                   engine=a.engine, rng=rng))
    else:
      results.append(session.release_vector_query(name, s, g, pop, epsilon=eps,
                                                  delta=a.delta, engine=a.engine))
    logging.info('%s released at epsilon %g (%.0f s)', name, eps, time.monotonic() - t0)
  session.write(_WORKDIR.value, results, delta=a.delta, num_users=g.num_users,
                ledger=ledger, engine=a.engine, specs=specs)
  if config.accuracy.enabled:
    _accuracy(config, g, specs, pop, rng)
  analytics_report.write_report(_WORKDIR.value)
  _print(results, ledger)


def _accuracy(config, g, specs, pop, rng):
  acc = config.accuracy
  sizes = [n for n in acc.users if n <= g.num_users] or [g.num_users]
  rows = accuracy.study(g, specs, pop, sizes=sizes, epsilons=list(acc.epsilons),
                        delta=config.analytics.delta, repeats=acc.repeats,
                        central_max_users=acc.central_max_users,
                        central_repeats=acc.central_repeats, rng=rng,
                        progress=lambda name: logging.info('accuracy: %s done', name))
  rundir.write_csv(os.path.join(_WORKDIR.value, accuracy.ACCURACY_FILE),
                   accuracy.COLUMNS, accuracy.fill(rows))


def _print(results, ledger):
  for r in results:
    print(f'{r.name}: epsilon {r.epsilon:g}, noise stddev {r.noise_stddev:.3g}')
    for row in r.rows[:8]:
      print(f"  {row['item']:<44} {row['value']:>10.2f} ± {1.96 * row['stddev']:.2f} "
            f"{row['unit']}")
  print(f'Budget: epsilon {ledger.spent:.3g} of {ledger.epsilon:g} spent (delta '
        f'{ledger.delta:g}). Report: {os.path.join(_WORKDIR.value, "report.html")}')


if __name__ == '__main__':
  cli.run(main, known=(rundir.RunDirectoryError,), log_dir=lambda: _WORKDIR.value)
