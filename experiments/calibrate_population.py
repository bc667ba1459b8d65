r"""A behaviour model's population measured beside published statistics of real apps.

  .venv/bin/python experiments/calibrate_population.py [--generator=app_paths]
      [--users=5000] [--workdir=results/population]

Prints each statistic of `fl_analytics.data.calibration.PUBLISHED` the population has
(retention, DAU/MAU, evening sessions, the heavy tail of action use, sessions per day
and session minutes per app category), the published range and its source, and writes
WORKDIR/calibration.json and WORKDIR/figures/calibration.{png,pdf}.
"""

import os

from absl import flags
import numpy as np

from fl_analytics.core import cli
from fl_analytics.core import rundir
from fl_analytics.data import calibration
from fl_analytics.data import generators
from fl_analytics.reporting import plots

_GENERATOR = flags.DEFINE_enum('generator', 'app_paths', list(generators.REGISTRY),
                               'The behaviour model (data.generator).')
_USERS = flags.DEFINE_integer('users', 5000, 'Users measured.', lower_bound=100)
_DAYS = flags.DEFINE_integer('num_days', 90, 'Days of logs.', lower_bound=60)
_SEED = flags.DEFINE_integer('seed', 0, 'data.seed.')
_WORKDIR = flags.DEFINE_string('workdir', 'results/population', 'Output directory.')


def main(argv):
  del argv  # cli.parse_flags refuses positional arguments
  rundir.check_writable_directory(_WORKDIR.value)
  generator = generators.get(_GENERATOR.value)
  batch = generator.generate_users(np.arange(_USERS.value), seed=_SEED.value,
                                   num_days=_DAYS.value, quantity_skew=1.0,
                                   label_skew=1.0, feature_skew=1.0)
  rows = calibration.table(calibration.statistics(batch, num_days=_DAYS.value))
  print(f'{generator.name} (version {generator.version}), {_USERS.value} users, '
        f'{_DAYS.value} days, default knobs:')
  print(f'  {"statistic":<44} {"synthetic":>9}  published')
  for r in rows:
    print(f'  {r["description"]:<44} {r["synthetic"]:9.3f}  {r["published_low"]:g}-'
          f'{r["published_high"]:g} {"within" if r["within"] else "OUTSIDE"}')
  print(f'{sum(r["within"] for r in rows)} of {len(rows)} within their published range; '
        'sources in calibration.json.')
  rundir.write_json(os.path.join(_WORKDIR.value, 'calibration.json'), {
      'generator': generator.name, 'version': generator.version, 'users': _USERS.value,
      'num_days': _DAYS.value, 'seed': _SEED.value, 'rows': rows})
  for path in plots.population_calibration(
      rows, _WORKDIR.value, title=f'{generator.name}: synthetic (dot) against published '
      f'ranges (bars), {_USERS.value} users'):
    print(f'Wrote {path}')


if __name__ == '__main__':
  cli.run(main, known=(rundir.RunDirectoryError,), log_dir=lambda: _WORKDIR.value)
