r"""Draws the figures of a sweep from its run directories.

  .venv/bin/python experiments/plot.py --workdir=DIR

Writes DIR/figures/{frontier,auc_by_round,epsilon_by_round,clip_by_round}.{png,pdf}.
"""


from absl import flags

from fl_analytics.core import cli
from fl_analytics.reporting import plots

_WORKDIR = flags.DEFINE_string('workdir', None, 'Sweep directory.')
flags.mark_flags_as_required(['workdir'])


def main(argv):
  del argv  # cli.parse_flags refuses positional arguments
  paths = plots.plot_sweep(_WORKDIR.value)
  print('Figures:')
  for path in paths:
    print(f'  {path}')


if __name__ == '__main__':
  cli.run(main, known=(ValueError, FileNotFoundError), log_dir=lambda: _WORKDIR.value)
