r"""Copies a finished sweep's small files into a committed reference directory.

  .venv/bin/python experiments/export_reference.py --workdir=runs/reference \
      --reference=results/reference

Keeps summary.csv, figures/, and each run's config.json, metrics.csv, privacy.json and,
where they exist, audit.json and evaluation.json.
"""

from absl import flags

from fl_analytics.core import cli
from fl_analytics.reporting import plots
from fl_analytics.reporting import reference

_WORKDIR = flags.DEFINE_string('workdir', None, 'Finished sweep directory.')
_REFERENCE = flags.DEFINE_string('reference', 'results/reference', 'Destination.')
flags.mark_flags_as_required(['workdir'])


def main(argv):
  del argv  # cli.parse_flags refuses positional arguments
  reference.export_small_files(_WORKDIR.value, _REFERENCE.value,
                               extra_dirs=(plots.FIGURE_DIR,))
  print(f'Reference written to {_REFERENCE.value}')


if __name__ == '__main__':
  cli.run(main)
