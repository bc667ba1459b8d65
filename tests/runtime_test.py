"""No TFF worker_binary outlives the run that started it: success, error, Ctrl-C, kill."""

import os
import signal
import subprocess
import sys
import time

import pytest
import tensorflow_federated as tff

from fl_analytics.core import runtime

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ['--config.data.num_users=150', '--config.data.num_days=40',
        '--config.clients_per_round=20', '--config.eval_every=1']


@tff.federated_computation
def _hello():
  return 'hello'


def _train_cmd(workdir, *extra):
  return [sys.executable, os.path.join(REPO, 'experiments', 'train.py'),
          '--config=' + os.path.join(REPO, 'configs', 'churn.py'),
          f'--workdir={workdir}', *TINY, *extra]


def _wait_for(predicate, timeout_s=120.0):
  deadline = time.monotonic() + timeout_s
  while time.monotonic() < deadline:
    if predicate():
      return True
    time.sleep(0.2)
  return False


def _children(pid):
  return runtime.worker_pids_owned_by(pid, include_orphans=False)


@pytest.mark.cpp
def test_context_stops_its_worker_on_exit_and_on_error():
  with runtime.local_cpp_context() as worker:
    assert _hello() == b'hello'
    pid = worker.pid
    assert pid in runtime.running_worker_pids()
  assert pid not in runtime.running_worker_pids()

  with pytest.raises(RuntimeError, match='boom'):
    with runtime.local_cpp_context() as worker:
      pid = worker.pid
      raise RuntimeError('boom')
  assert pid not in runtime.running_worker_pids()


@pytest.mark.cpp
def test_train_script_leaves_no_worker_on_success_and_keeps_pipe_free(tmp_path):
  before = runtime.worker_pids_owned_by(os.getpid())
  # Through a pipe, as `train.py | tail` would: communicate() returns only once every
  # holder of the pipe (a leaked worker too) has closed it.
  proc = subprocess.Popen(_train_cmd(tmp_path / 'ok', '--config.num_rounds=1',
                                     '--config.runtime.engine=cpp'),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
  out, _ = proc.communicate(timeout=300)
  assert proc.returncode == 0, out.decode()[-2000:]
  assert b'Results in' in out
  assert runtime.worker_pids_owned_by(os.getpid()) - before == set()


@pytest.mark.cpp
def test_train_script_reports_bad_settings_without_traceback(tmp_path):
  result = subprocess.run(_train_cmd(tmp_path / 'bad', '--config.dp.clip=-1'),
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 2
  assert 'dp.clip must be a finite number > 0. Found -1' in result.stderr
  assert 'Traceback' not in result.stderr
  assert not (tmp_path / 'bad').exists()


@pytest.mark.cpp
@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_interrupted_or_killed_run_leaves_no_worker_and_resumes(tmp_path, sig):
  workdir = tmp_path / 'run'
  before = runtime.worker_pids_owned_by(os.getpid())
  # The cpp engine starts a worker; the default (mapreduce) engine starts none.
  proc = subprocess.Popen(_train_cmd(workdir, '--config.num_rounds=200',
                                     '--config.runtime.engine=cpp'),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    # A finished checkpoint (not the temporary file one is written to before its rename).
    assert _wait_for(lambda: (workdir / 'checkpoints').is_dir() and any(
        not name.startswith('.') for name in os.listdir(workdir / 'checkpoints')))
    workers = _children(proc.pid)
    assert workers, 'the run should have started a worker'
    proc.send_signal(sig)
    proc.wait(timeout=60)
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()
  assert _wait_for(lambda: not (workers & runtime.running_worker_pids()), 10)
  assert runtime.worker_pids_owned_by(os.getpid()) - before == set()
  done = len(open(workdir / 'metrics.csv').read().splitlines()) - 1
  assert done >= 1
  # The same command (with fewer rounds so it ends soon) resumes after `done`.
  result = subprocess.run(
      _train_cmd(workdir, f'--config.num_rounds={done + 1}', '--config.runtime.engine=cpp'),
      capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  assert f'Resuming {workdir} after round' in result.stderr
