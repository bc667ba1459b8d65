r"""The canary audit's power by model size, from the committed `make audit-power` sweeps.

  .venv/bin/python experiments/plot_audit_power.py --reference=results/audit_power

Reads REFERENCE/churn and REFERENCE/next_action; writes REFERENCE/power.csv (each run's
statistics) and REFERENCE/figures/power.png (fl_analytics/reporting/plots.py).
"""

import os

from absl import flags

from fl_analytics.core import cli
from fl_analytics.core import rundir
from fl_analytics.reporting import plots

_REFERENCE = flags.DEFINE_string('reference', 'results/audit_power',
                                 'Directory of the churn/ and next_action/ sweeps.')


def main(argv):
  del argv  # cli.parse_flags refuses positional arguments
  directories = [os.path.join(_REFERENCE.value, task) for task in ('churn', 'next_action')]
  rows = plots.audit_power_rows(directories)
  if not rows:
    raise ValueError(f'No run with canaries under {", ".join(directories)}.')
  columns = list(rows[0])
  path = os.path.join(_REFERENCE.value, 'power.csv')
  rundir.write_csv(path, columns, rows)
  print(f'wrote {path}')
  for path in plots.audit_power(rows, _REFERENCE.value):
    print(f'wrote {path}')


if __name__ == '__main__':
  cli.run(main, known=(rundir.RunDirectoryError, ValueError))
