r"""Trains one DP-FedAvg run: flags and a config in, `train_and_evaluate` out.

  .venv/bin/python experiments/train.py --config=configs/churn.py --workdir=DIR \
      [--config.KEY=VALUE ...]
"""

from absl import flags
from ml_collections import config_flags

from fl_analytics.core import cli
from fl_analytics.privacy import sampling
from fl_analytics.privacy import secagg
from fl_analytics.reporting import report
from fl_analytics.core import rundir
from fl_analytics.runs import training

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory (created if missing).')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  del argv  # cli.parse_flags refuses positional arguments
  training.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  print(report.run_summary(_WORKDIR.value))


if __name__ == '__main__':
  cli.run(main, interrupted='Interrupted; run the same command again to resume after '
                            'the last completed round.',
          known=(training.InvalidSettingsError, rundir.RunDirectoryError),
          failures=(training.DivergenceError, sampling.ParticipationError,
                    secagg.AbortError, ConnectionError),  # ConnectionError: Ray
          log_dir=lambda: _WORKDIR.value)
