"""Sweep points as Ray tasks on a cluster (`experiments/sweep.py --ray_address=...`).

A point is the same `train.py` command as in a local sweep (`fl_analytics.sweeps`),
started by a Ray task that asks for `cpus_per_point` CPUs and gives the point as many
TensorFlow threads; Ray places the tasks on the cluster's nodes and queues the rest.
Nothing here schedules: the tasks are Ray's, retried by Ray when their node or
worker is lost (`max_retries`), and the sweep's semantics stay those of
`sweeps.run_sweep`: finished points are skipped, interrupted ones resume, a failed one
is reported with the end of its log while the others go on.

Where the run directories are written, per point, decided on the node that runs it:

* **shared path** (an NFS or similar mount at the same path on every node, or one
  machine): the node sees the sweep's marker file in `DIR/logs/`, and the point runs in
  `DIR/<run name>/` itself, logging to `DIR/logs/<run name>.log`, as locally. A point
  retried after its node was lost resumes from its last checkpoint there (the retry
  first waits for the lost attempt's process, which gets SIGTERM, to release the run
  directory's lock).
* **shipped back**: a node that does not see the marker runs the point in a directory
  of its own (`/tmp/fl-analytics-ray/<sweep id>/`), starting from the driver's copy of
  the run directory if there is one (an interrupted point resumes), and returns the
  run directory and the log as a tar archive when the point ends, done or failed; the
  driver unpacks it into `DIR/<run name>/` (replacing it whole) and appends the log.
  A point whose node is lost starts again on another node.

`transfer='shared'` or `'ship'` forces one; 'auto' (default) is the rule above.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import shutil
import socket
import tarfile
import time
import uuid
from typing import Optional

from fl_analytics.cluster import ray_cluster
from fl_analytics.core import rundir
from fl_analytics.sweeps import launchers

TRANSFERS = ('auto', 'shared', 'ship')
NODE_DIR = os.path.join('/tmp', 'fl-analytics-ray')
# Seconds a retried point waits for its lost attempt to release the run directory.
_LOCK_WAIT_S = 120.0
# Retries of a point whose worker or node was lost (Ray's task retries).
MAX_RETRIES = 3


def _archive(directory: str) -> bytes:
  buffer = io.BytesIO()
  with tarfile.open(fileobj=buffer, mode='w:gz') as tar:
    tar.add(directory, arcname='.')
  return buffer.getvalue()


def _unpack(data: bytes, directory: str) -> None:
  with tarfile.open(fileobj=io.BytesIO(data), mode='r:gz') as tar:
    tar.extractall(directory, filter='data')


def _wait_unlocked(run_dir: str, timeout: float) -> None:
  """Returns once nobody holds `run_dir`'s lock (or it has none), at most `timeout` s."""
  path = os.path.join(run_dir, rundir.LOCK_FILE)
  deadline = time.monotonic() + timeout
  while True:
    try:
      fd = os.open(path, os.O_RDONLY)
    except OSError:
      return
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      return
    except BlockingIOError:
      if time.monotonic() > deadline:
        return  # train.py names the holder
    finally:
      os.close(fd)
    time.sleep(0.5)


def run_point(spec: dict) -> dict:
  """The body of a point's Ray task (on whichever node Ray placed it)."""
  import ray  # pylint: disable=g-import-not-at-top

  shared = spec['transfer'] == 'shared' or (
      spec['transfer'] == 'auto' and os.path.exists(spec['marker']))
  host = f'{socket.gethostname()} (node {ray.get_runtime_context().get_node_id()[:8]})'
  if spec['transfer'] == 'shared' and not os.path.exists(spec['marker']):
    raise FileNotFoundError(
        f'ray_transfer=shared, but node {host} does not see {spec["marker"]}: the sweep '
        'directory is not on a shared path there.')
  if shared:
    run_dir, log_path, cmd = spec['run_dir'], spec['log_path'], spec['shared_command']
    _wait_unlocked(run_dir, _LOCK_WAIT_S)  # a lost attempt's process may still be there
  else:
    run_dir, cmd = spec['node_run_dir'], spec['ship_command']
    log_path = run_dir + '.log'
    shutil.rmtree(run_dir, ignore_errors=True)  # a previous attempt's on this node
    os.makedirs(run_dir)
    if os.path.exists(log_path):
      os.unlink(log_path)
    if spec['archive'] is not None:
      _unpack(spec['archive'], run_dir)
  with open(log_path, 'ab') as out:
    out.write(f'[ray] {spec["name"]} on {host} ({"shared path" if shared else "shipped back"})'
              f'\n'.encode())
  proc = launchers.start_point(cmd, log_path, spec['threads'])
  code = proc.wait()  # the sweep interrupted: this worker is killed, the point SIGTERMed
  result = {'code': code, 'host': host, 'shared': shared}
  if not shared:
    # A launch refused before writing anything leaves no run directory (as locally).
    written = set(os.listdir(run_dir)) - {rundir.LOCK_FILE}
    result['archive'] = _archive(run_dir) if written else None
    with open(log_path, 'rb') as f:
      result['log'] = f.read()
    shutil.rmtree(run_dir, ignore_errors=True)
    os.unlink(log_path)
    with contextlib.suppress(OSError):  # the sweep's directory, once its last point left
      os.rmdir(os.path.dirname(run_dir))
  return result


class RayLauncher:
  """`sweeps.run_sweep`'s launcher for a Ray cluster: a point is a Ray task."""

  def __init__(self, address: str, workdir: str, *, cpus_per_point: int = 1,
               parallel: Optional[int] = None, transfer: str = 'auto'):
    if transfer not in TRANSFERS:
      raise ValueError(f'ray transfer must be one of {", ".join(TRANSFERS)}. '
                       f'Found {transfer!r}.')
    self._address, self._workdir = address, os.path.abspath(workdir)
    self._transfer = transfer
    self._cpus = cpus_per_point
    self._parallel = parallel
    self._sweep_id = uuid.uuid4().hex[:12]
    self._marker = os.path.join(self._workdir, launchers.LOG_DIR, f'.ray-sweep-{self._sweep_id}')
    self._ray = None

  def __enter__(self):
    self._ray = ray_cluster.connect(self._address)
    os.makedirs(os.path.dirname(self._marker), exist_ok=True)
    with open(self._marker, 'w') as f:
      f.write(socket.gethostname() + '\n')
    self._task = self._ray.remote(num_cpus=self._cpus, max_retries=MAX_RETRIES)(run_point)
    try:
      self.cluster_cpus = ray_cluster.check_cpus(
          self._ray, self._address, self._cpus,
          f'Sweep points of {self._cpus} CPUs (--ray_cpus_per_point)')
    except ray_cluster.ClusterError:
      self.__exit__(None, None, None)
      raise
    return self

  def __exit__(self, *exc):
    if os.path.exists(self._marker):
      os.unlink(self._marker)
    if self._ray is not None:
      self._ray.shutdown()
      self._ray = None
    return False

  @property
  def parallel(self) -> int:
    """Points in flight: all of them unless capped (Ray queues what does not fit)."""
    return self._parallel or 1024

  def describe(self) -> str:
    return (f'as Ray tasks on {self._address} ({self.cluster_cpus} CPUs now), '
            f'{self._cpus} CPU(s) and TF thread(s) each')

  def start(self, point: launchers.Point, run_dir: str, log_path: str, command):
    node_run_dir = os.path.join(NODE_DIR, self._sweep_id, point.name)
    # What a node that ships back resumes from (with 'auto', any node may have to).
    archive = (_archive(run_dir) if self._transfer != 'shared' and os.path.isdir(run_dir)
               else None)
    spec = {'name': point.name, 'transfer': self._transfer, 'marker': self._marker,
            'run_dir': os.path.abspath(run_dir), 'log_path': os.path.abspath(log_path),
            'node_run_dir': node_run_dir, 'archive': archive, 'threads': self._cpus,
            'shared_command': command(point, os.path.abspath(run_dir)),
            'ship_command': command(point, node_run_dir)}
    return _Handle(point.name, run_dir, log_path, self._task.remote(spec))

  def wait(self, handle: '_Handle') -> tuple[int, str]:
    try:
      result = self._ray.get(handle.ref)
    except self._ray.exceptions.TaskCancelledError:
      return -2, ' (cancelled: sweep interrupted)'
    except self._ray.exceptions.RayError as e:  # lost more than MAX_RETRIES times, ...
      with open(handle.log_path, 'a') as f:
        f.write(f'[ray] the point\'s task failed: {e}\n')
      return -1, f' (Ray: {type(e).__name__})'
    if not result['shared'] and result['archive'] is not None:
      _replace_dir(result['archive'], handle.run_dir)
    if not result['shared']:
      with open(handle.log_path, 'ab') as f:
        f.write(result['log'])
    where = 'shared path' if result['shared'] else 'shipped back'
    return result['code'], f' on {result["host"]} ({where})'

  def stop(self, handles) -> None:
    """Ctrl-C: queued points are cancelled; a running point's task is killed
    (`ray.cancel(force=True)`: Ray's KeyboardInterrupt did not reach a task blocked in
    waiting for its process, measured here), and its process gets SIGTERM from the
    kernel (`PR_SET_PDEATHSIG`), on which `train.py` stops after its last completed
    round, as on Ctrl-C. Waits for the tasks to end."""
    refs = [h.ref for h in handles]
    for ref in refs:
      self._ray.cancel(ref, force=True)
    self._ray.wait(refs, num_returns=len(refs), timeout=launchers.STOP_GRACE_S + 5)


class _Handle:

  def __init__(self, name, run_dir, log_path, ref):
    self.name, self.run_dir, self.log_path, self.ref = name, run_dir, log_path, ref


def _replace_dir(archive: bytes, run_dir: str) -> None:
  """Unpacks a shipped run directory in place of `run_dir`, never half-written: into a
  sibling first, then renamed over it."""
  parent = os.path.dirname(os.path.abspath(run_dir))
  name = os.path.basename(run_dir)
  incoming = os.path.join(parent, f'.incoming-{name}')
  old = os.path.join(parent, f'.replaced-{name}')
  for d in (incoming, old):
    shutil.rmtree(d, ignore_errors=True)
  _unpack(archive, incoming)
  if os.path.exists(run_dir):
    os.rename(run_dir, old)
  os.rename(incoming, run_dir)
  shutil.rmtree(old, ignore_errors=True)
