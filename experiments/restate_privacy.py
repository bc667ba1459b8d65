r"""Writes the privacy statements of recorded runs again with the current code.

  .venv/bin/python experiments/restate_privacy.py --workdir=results/scale

Each run directory under --workdir (or --workdir itself) gets its privacy.json from its
config.json and the rounds of its metrics.csv (`fl_analytics.runs.training.restate`):
what a change to the statement code (not to the mechanisms) moves, without training.
"""

import os

from absl import flags

from fl_analytics.core import cli
from fl_analytics.core import rundir
from fl_analytics.runs import training

_WORKDIR = flags.DEFINE_string('workdir', None, 'A run directory, or a sweep directory.')
flags.mark_flags_as_required(['workdir'])


def main(argv):
  del argv  # cli.parse_flags refuses positional arguments
  root = _WORKDIR.value
  runs = ([root] if os.path.exists(os.path.join(root, rundir.PRIVACY_FILE)) else
          sorted(os.path.join(root, d) for d in os.listdir(root)
                 if os.path.exists(os.path.join(root, d, rundir.PRIVACY_FILE))))
  if not runs:
    raise ValueError(f'--workdir={root} holds no run with a {rundir.PRIVACY_FILE}.')
  changed = sum(training.restate(run) for run in runs)
  print(f'{changed} of {len(runs)} statements changed in {root}')


if __name__ == '__main__':
  cli.run(main)
