r"""Draws the figures of a sweep from its run directories.

  .venv/bin/python experiments/plot.py --workdir=DIR [--equal_utility=MECHANISM]

Writes DIR/figures/{frontier,auc_by_round,epsilon_by_round,clip_by_round}.{png,pdf}.
With --equal_utility, also DIR/equal_utility.csv: at the utility MECHANISM reaches at
each of its budgets, the epsilon every private mechanism of the sweep needs for it
(`summary.equal_utility`), and prints it.
"""


from absl import flags

from fl_analytics.core import cli
from fl_analytics.reporting import plots
from fl_analytics.reporting import summary

_WORKDIR = flags.DEFINE_string('workdir', None, 'Sweep directory.')
_EQUAL_UTILITY = flags.DEFINE_string(
    'equal_utility', None, 'A mechanism of the sweep: write equal_utility.csv against it.')
flags.mark_flags_as_required(['workdir'])


def main(argv):
  del argv  # cli.parse_flags refuses positional arguments
  paths = plots.plot_sweep(_WORKDIR.value)
  print('Figures:')
  for path in paths:
    print(f'  {path}')
  if _EQUAL_UTILITY.value:
    rows = summary.write_equal_utility(_WORKDIR.value, _EQUAL_UTILITY.value)
    print(f'Epsilon at the utility {_EQUAL_UTILITY.value} reaches '
          f'({summary.EQUAL_UTILITY_FILE}):')
    for r in rows:
      eps = 'more than any budget run' if r['epsilon'] is None else (
          f"{'at most ' if r['bound'] == '<=' else ''}{r['epsilon']:.3g} "
          f"({r['epsilon_ratio']:.2f}x)")
      print(f"  {r['utility_column']} {r['utility']:.4f} "
            f"({_EQUAL_UTILITY.value} at {r['reference_epsilon']:.3g}): "
            f"{r['mechanism']} {eps}")


if __name__ == '__main__':
  cli.run(main, known=(ValueError, FileNotFoundError), log_dir=lambda: _WORKDIR.value)
