"""A TFF execution context whose C++ worker never outlives the run.

TFF 0.87's default local context (`tff.backends.native.
set_sync_local_cpp_execution_context`) starts `tensorflow_federated/data/worker_binary`
lazily, from whichever thread first executes a computation, with the parent's stdout and
stderr, and stops it only in `__del__`. Measured here: the worker kept running after its
script ended and held the script's stdout, so `python train.py | tail` (and a CI job)
waited on it.

`local_cpp_context` builds the same context from TFF's public pieces
(`tff.framework.SyncExecutionContext`, `ResourceManagingExecutorFactory`,
`RemoteExecutor`, `RemoteExecutorGrpcStub`) but owns the worker process:

* it is started eagerly from the calling thread, with stdout/stderr sent to a log file
  (or discarded), never to the parent's streams;
* on Linux it gets `PR_SET_PDEATHSIG = SIGKILL`, so the kernel kills it even when the
  parent dies by SIGKILL;
* it is stopped (SIGINT, then SIGKILL after a grace period) when the context exits, on
  success, on exceptions and on KeyboardInterrupt; `install_sigterm_handler` turns
  SIGTERM into `SystemExit` so that the same cleanup runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from typing import Iterator, Optional

_GRPC_MAX_MESSAGE_BYTES = 2 * 1000 * 1000 * 1000
_GRPC_OPTIONS = [
    ('grpc.max_message_length', _GRPC_MAX_MESSAGE_BYTES),
    ('grpc.max_receive_message_length', _GRPC_MAX_MESSAGE_BYTES),
    ('grpc.max_send_message_length', _GRPC_MAX_MESSAGE_BYTES),
]
_PR_SET_PDEATHSIG = 1
WORKER_MARKER = 'data/worker_binary'


def worker_binary_path() -> str:
  import tensorflow_federated  # pylint: disable=g-import-not-at-top

  path = os.path.join(
      os.path.dirname(tensorflow_federated.__file__), 'data', 'worker_binary'
  )
  if not os.path.isfile(path):
    raise RuntimeError(f'TFF worker binary not found at {path}.')
  return path


def die_with_parent(sig: int = signal.SIGKILL) -> None:
  """Runs in the child before exec: ask the kernel to send `sig` when its parent dies.

  (Linux's `PR_SET_PDEATHSIG`; strictly, when the parent *thread* that started it
  exits, so start children from a thread that outlives them.)
  """
  if sys.platform.startswith('linux'):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, sig)


class LocalWorker:
  """One `worker_binary` process serving TFF's remote-executor protocol."""

  def __init__(
      self,
      *,
      max_concurrent_computation_calls: int = -1,
      log_path: Optional[str] = None,
      startup_timeout_s: float = 60.0,
  ):
    self._max_calls = max_concurrent_computation_calls
    self._log_path = log_path
    self._startup_timeout_s = startup_timeout_s
    self._process: Optional[subprocess.Popen] = None
    self.stub = None

  @property
  def pid(self) -> Optional[int]:
    return None if self._process is None else self._process.pid

  @property
  def alive(self) -> bool:
    return self._process is not None and self._process.poll() is None

  def start(self) -> None:
    import grpc  # pylint: disable=g-import-not-at-top
    import portpicker  # pylint: disable=g-import-not-at-top
    import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top

    port = portpicker.pick_unused_port()
    args = [
        worker_binary_path(),
        f'--port={port}',
        f'--max_concurrent_computation_calls={self._max_calls}',
    ]
    if self._log_path:
      out = open(self._log_path, 'ab')  # pylint: disable=consider-using-with
    else:
      out = subprocess.DEVNULL
    try:
      self._process = subprocess.Popen(  # pylint: disable=consider-using-with
          args,
          stdin=subprocess.DEVNULL,
          stdout=out,
          stderr=subprocess.STDOUT,
          close_fds=True,
          preexec_fn=die_with_parent,
      )
    finally:
      if out is not subprocess.DEVNULL:
        out.close()
    channel = grpc.insecure_channel(f'localhost:{port}', _GRPC_OPTIONS)
    self.stub = tff.framework.RemoteExecutorGrpcStub(channel)
    deadline = time.monotonic() + self._startup_timeout_s
    while not self.stub.is_ready:
      if self._process.poll() is not None:
        raise RuntimeError(
            'TFF worker_binary exited during start-up with code '
            f'{self._process.returncode}; see {self._log_path or "its log"}.'
        )
      if time.monotonic() > deadline:
        self.stop()
        raise RuntimeError(
            f'TFF worker_binary did not become ready in {self._startup_timeout_s} s.'
        )
      time.sleep(0.05)

  def stop(self, grace_s: float = 5.0) -> None:
    process, self._process = self._process, None
    if process is None or process.poll() is not None:
      return
    process.send_signal(signal.SIGINT)
    try:
      process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
      process.kill()
      process.wait()


@contextlib.contextmanager
def local_cpp_context(
    *,
    max_concurrent_computation_calls: int = -1,
    log_path: Optional[str] = None,
) -> Iterator[LocalWorker]:
  """Installs a TFF sync execution context backed by a worker this process owns.

  Computations invoked inside the `with` block run on the worker; the worker is
  stopped when the block exits, however it exits.

  Args:
    max_concurrent_computation_calls: passed to the worker; nonpositive means no
      limit (TFF's default).
    log_path: where the worker's stdout/stderr go; discarded when None.

  Yields:
    The running `LocalWorker`.
  """
  import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top

  global _installed
  worker = LocalWorker(
      max_concurrent_computation_calls=max_concurrent_computation_calls,
      log_path=log_path,
  )
  try:
    worker.start()
    with tff.framework.get_context_stack().install(_worker_context(worker, log_path)):
      _installed += 1
      try:
        yield worker
      finally:
        _installed -= 1
  finally:
    worker.stop()


_installed = 0  # local_cpp_context blocks open in this process


class WorkerExitedError(RuntimeError):
  """The context's worker_binary is gone (it crashed): a fresh context can go on."""


@contextlib.contextmanager
def shared_cpp_context() -> Iterator[None]:
  """`local_cpp_context()`, unless one is already open: then its worker runs the
  computations (a worker takes about a second to start)."""
  if _installed:
    yield
    return
  with local_cpp_context():
    yield


def _worker_context(worker: LocalWorker, log_path: Optional[str]):
  """TFF's sync execution context on `worker`, built from TFF's public pieces."""
  import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top

  def stack_fn(cardinalities):
    # Not `stub.is_ready`: a healthy channel can be IDLE between calls.
    if not worker.alive:
      raise WorkerExitedError(
          f'The TFF worker_binary (pid {worker.pid}) has exited; see '
          f'{log_path or "its log"}.')
    # As TFF's own local factory does: computations with no federated argument
    # still need a CLIENTS cardinality.
    cardinalities = dict(cardinalities)
    if cardinalities.get(tff.CLIENTS) is None:
      cardinalities[tff.CLIENTS] = 0
    executor = tff.framework.RemoteExecutor(worker.stub)
    executor.set_cardinalities(cardinalities)
    return executor

  def compile_fn(comp):
    # The C++ worker has no secure-sum intrinsics: as TFF's own test context
    # (`tff.backends.test`) does, replace them with plain TensorFlow sums that keep
    # their range checks. A simulation of secure aggregation, no cryptography.
    comp = tff.backends.test.replace_secure_intrinsics_with_bodies(comp)
    return tff.backends.native.desugar_and_transform_to_native(comp)

  return tff.framework.SyncExecutionContext(
      executor_fn=tff.framework.ResourceManagingExecutorFactory(
          executor_stack_fn=stack_fn
      ),
      compiler_fn=compile_fn,
      transform_args=tff.tensorflow.transform_args,
      transform_result=tff.tensorflow.transform_result,
  )


def thread_env(threads: int) -> dict[str, str]:
  """Environment variables giving a process `threads` TensorFlow (and OpenMP) threads,
  which both TF in Python and TFF's C++ worker read, with TensorFlow's C++ start-up
  notices quiet unless this process says otherwise."""
  return {'TF_NUM_INTRAOP_THREADS': str(threads), 'TF_NUM_INTEROP_THREADS': str(threads),
          'OMP_NUM_THREADS': str(threads),
          'TF_CPP_MIN_LOG_LEVEL': os.environ.get('TF_CPP_MIN_LOG_LEVEL', '2')}


def pids_with_cmdline(predicate) -> set[int]:
  """PIDs of the processes on this machine whose command line (arguments joined by
  spaces) satisfies `predicate` (from /proc; Linux only). A zombie's is empty."""
  pids = set()
  for entry in os.listdir('/proc'):
    if not entry.isdigit():
      continue
    try:
      with open(f'/proc/{entry}/cmdline', 'rb') as f:
        cmdline = f.read().replace(b'\0', b' ').decode(errors='replace')
    except OSError:
      continue
    if predicate(cmdline):
      pids.add(int(entry))
  return pids


def running_worker_pids() -> set[int]:
  """PIDs of every TFF worker_binary on this machine."""
  return pids_with_cmdline(lambda c: WORKER_MARKER in c and '--port' in c)


def _parent_pid(pid: int) -> int:
  with open(f'/proc/{pid}/stat') as f:
    return int(f.read().rsplit(')', 1)[1].split()[1])


def worker_pids_owned_by(root_pid: int, *, include_orphans: bool = True) -> set[int]:
  """Workers that descend from `root_pid`, plus orphaned ones (re-parented to init).

  An orphan is what a leak looks like once its parent has exited; workers of other
  live processes on the machine are not counted.
  """
  owned = set()
  for pid in running_worker_pids():
    try:
      p = _parent_pid(pid)
      if p == 1 and include_orphans:
        owned.add(pid)
        continue
      while p > 1:
        if p == root_pid:
          owned.add(pid)
          break
        p = _parent_pid(p)
    except (OSError, ValueError, IndexError):
      continue
  return owned
