"""Suite-wide guard: no TFF worker_binary may outlive the tests that started it."""

import os
import signal

# Before TensorFlow is imported anywhere: keep its C++ start-up notices out of the logs.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import pytest  # pylint: disable=g-import-not-at-top

# A shell starts a background job (`make test &`, a CI runner's job) with SIGINT ignored,
# and the processes the tests start would inherit that: Ctrl-C tests would then see a
# run that ignores Ctrl-C. Restored to Python's default before any test starts one.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
  signal.signal(signal.SIGINT, signal.default_int_handler)

from fl_analytics.core import runtime


@pytest.fixture(scope='session', autouse=True)
def no_worker_left_behind():
  before = runtime.worker_pids_owned_by(os.getpid())
  yield
  leaked = runtime.worker_pids_owned_by(os.getpid()) - before
  for pid in leaked:  # never let a leaked worker hold CI's output open
    try:
      os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
      pass
  assert not leaked, f'TFF worker_binary processes left running: {sorted(leaked)}'


@pytest.fixture(scope='session')
def tiny_sweep(tmp_path_factory):
  """`tests/sweeps_test.py`'s tiny sweep (`TINY_SETTINGS`, seed 0) run once here, two
  points at a time: `(config path, sweep directory, the finished sweep.py process)`.
  The local sweep's test reads it; the Ray sweep's test compares its summary with it."""
  import subprocess  # pylint: disable=g-import-not-at-top
  from tests import sweeps_test  # pylint: disable=g-import-not-at-top

  root = tmp_path_factory.mktemp('tiny_sweep')
  config = root / 'tiny_sweep.py'
  sweeps_test.write_tiny_sweep(config, sweeps_test.TINY_SETTINGS, [0])
  workdir = root / 'sweep'
  first = subprocess.run(sweeps_test.sweep_command(config, workdir, '--parallel=2'),
                         capture_output=True, text=True, timeout=600)
  return config, workdir, first
