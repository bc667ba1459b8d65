r"""Runs a sweep: every point is an ordinary `train.py` run in DIR/<run name>/.

  .venv/bin/python experiments/sweep.py --config=configs/sweeps/demo.py --workdir=DIR \
      [--parallel=N] [--config.seeds=(0,1)] [--ray_address=auto|HOST:PORT]

Finished points are skipped, interrupted ones resume; DIR/summary.csv is written at the
end (mean and std over seeds of the final epsilon, AUC and accuracy). With
--ray_address each point is a task on that Ray cluster (`fl_analytics.sweeps.ray_launcher`: run
directories on a shared path, or shipped back to DIR); without it no Ray process starts.
"""

import os
import sys

from absl import flags
from ml_collections import config_flags

from fl_analytics.core import cli
from fl_analytics.core import rundir
from fl_analytics.reporting import summary
from fl_analytics import sweeps

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(REPO, 'experiments', 'train.py')

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Sweep config file.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Sweep directory.')
_PARALLEL = flags.DEFINE_integer(
    'parallel', None, 'Points run at once (default: one per core).')
_RAY_ADDRESS = flags.DEFINE_string(
    'ray_address', None, "Run the points on this Ray cluster ('auto': the one this "
    'machine is part of, or HOST:PORT of its head). Default: subprocesses here.')
_RAY_CPUS = flags.DEFINE_integer(
    'ray_cpus_per_point', 1, 'With --ray_address: CPUs (and TF threads) of each point.')
_RAY_TRANSFER = flags.DEFINE_enum(
    'ray_transfer', 'auto', ['auto', 'shared', 'ship'],
    'With --ray_address: run directories written on a shared path (shared), shipped '
    'back to --workdir when a point ends (ship), or shipped only by nodes that do not '
    'see --workdir (auto).')
flags.mark_flags_as_required(['config', 'workdir'])


def train_command(point: sweeps.Point, run_dir: str) -> list[str]:
  sweep = _CONFIG.value
  return [sys.executable, TRAIN, f'--config={os.path.join(REPO, sweep.base_config)}',
          f'--workdir={run_dir}'] + [
              f'--config.{k}={v}' for k, v in point.overrides.items()]


def main(argv):
  del argv  # cli.parse_flags refuses positional arguments
  points = sweeps.expand(_CONFIG.value, repo_root=REPO)
  cli.install_sigterm_handler()  # SIGTERM stops the points too, see run_sweep
  results = sweeps.run_sweep(points, _WORKDIR.value, command=train_command,
                             parallel=_PARALLEL.value, ray_address=_RAY_ADDRESS.value,
                             cpus_per_point=_RAY_CPUS.value,
                             ray_transfer=_RAY_TRANSFER.value)
  rows = summary.write_summary(_WORKDIR.value)
  print(summary.format_summary(rows))
  print(f'Summary: {os.path.join(_WORKDIR.value, summary.SUMMARY_FILE)}')
  failed = [r for r in results if r.status == 'failed']
  if failed:
    print(f'{len(failed)} point(s) failed: ' + ', '.join(r.point.name for r in failed),
          file=sys.stderr)
    raise SystemExit(cli.RUN_FAILED)


if __name__ == '__main__':
  cli.run(main, interrupted='Interrupted; run the same command again to resume: finished '
                            'points are skipped, interrupted ones resume.',
          # sweeps.expand and run_sweep refuse a bad sweep config with ValueError
          known=(ValueError, FileNotFoundError, rundir.RunDirectoryError),
          failures=(ConnectionError,), log_dir=lambda: _WORKDIR.value)
