"""How a sweep's points start and stop: the point, the local launcher (subprocesses of
this process) and what every launcher shares (`fl_analytics.sweeps.ray_launcher` runs
points as Ray tasks with the same `start_point`). Below `fl_analytics.sweeps`, which
chooses a launcher, so neither launcher imports the sweep runner."""

from __future__ import annotations

import dataclasses
import functools
import os
import signal
import subprocess
import time
from typing import Any, Sequence

from fl_analytics.core import runtime

LOG_DIR = 'logs'


@dataclasses.dataclass(frozen=True)
class Point:
  name: str
  overrides: dict[str, Any]  # everything on top of the base config
  num_rounds: int


# Seconds interrupted points get to checkpoint and stop before they are killed.
STOP_GRACE_S = 30.0


def start_point(cmd: list[str], log_path: str, threads: int) -> subprocess.Popen:
  """Starts a point's process, its output appended to `log_path`: in its own process
  group (the point and its TFF worker are signalled together), with SIGTERM from the
  kernel if the thread that started it, which waits for it, goes away."""
  with open(log_path, 'ab') as out:
    return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL,
                            env={**os.environ, **runtime.thread_env(threads)},
                            start_new_session=True,
                            preexec_fn=functools.partial(runtime.die_with_parent,
                                                         signal.SIGTERM))


class LocalLauncher:
  """Points as subprocesses of this process, `parallel` at a time."""

  def __init__(self, parallel: int):
    self.parallel = parallel
    self.threads = max(1, (os.cpu_count() or 1) // parallel)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    return False

  def describe(self) -> str:
    return f'{self.parallel} at a time, {self.threads} TF thread(s) each'

  def start(self, point: Point, run_dir: str, log_path: str, command) -> subprocess.Popen:
    return start_point(command(point, run_dir), log_path, self.threads)

  def wait(self, proc: subprocess.Popen) -> tuple[int, str]:
    """(exit code, what to add to the failure message)."""
    return proc.wait(), ''

  def stop(self, procs: Sequence[subprocess.Popen]) -> None:
    stop_points(procs)


def stop_points(procs: Sequence[subprocess.Popen]) -> None:
  """SIGINT to each point's process group (each run checkpoints and stops its worker),
  SIGKILL to those still there after `STOP_GRACE_S`."""
  for proc in procs:
    _signal_group(proc, signal.SIGINT)
  deadline = time.monotonic() + STOP_GRACE_S
  for proc in procs:
    try:
      proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
      _signal_group(proc, signal.SIGKILL)
      proc.wait()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
  try:
    os.killpg(proc.pid, sig)
  except ProcessLookupError:
    pass
