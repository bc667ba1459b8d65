"""Ray for fl-analytics: connecting to a cluster, and a local cluster that is always stopped.

A cluster is what `ray start --head` and `ray start --address=HEAD:PORT` build (Ray's
own CLI; the docs/cluster.md). fl-analytics only connects to one
(`connect`), for sweeps (`fl_analytics.sweeps`, `--ray_address`) and for client groups
on actors (`fl_analytics.engines.ray_actors`, `runtime.ray_address`). Nothing here starts Ray
unless asked: the module imports `ray` inside its functions.

`local_cluster` starts a head and worker nodes on this machine with that same CLI (the
tests' two-node cluster, and `experiments/benchmark.py --ray`). Each node runs
`ray start --block` in a session of its own, so every process of a node (its raylet,
agents, workers) is in one process group: the node is killed with one `killpg`
(`LocalCluster.kill_node`, a machine lost) and the cluster is always stopped when the
block exits, on success, on exceptions and on Ctrl-C. Nodes start one after another:
two nodes starting together on one machine can pick the same free port and one raylet
then aborts ("bind: Address already in use", seen here).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Iterator, Optional

# Startup of one node (its `ray start` printing "Ray runtime started"); measured about
# 1 s a node here.
_START_TIMEOUT_S = 60.0
_STARTED = 'Ray runtime started'


def ray_executable() -> str:
  """The `ray` CLI of this interpreter's environment (the project's venv)."""
  path = os.path.join(os.path.dirname(sys.executable), 'ray')
  return path if os.path.exists(path) else 'ray'


# How long a HOST:PORT may take to accept a TCP connection before it is taken as down.
# Without this check `ray.init` retries an address with nothing listening for minutes.
_REACH_TIMEOUT_S = 5.0


def check_reachable(address: str, timeout_s: float = _REACH_TIMEOUT_S) -> None:
  """ConnectionError naming `address` (HOST:PORT) when nothing accepts a TCP connection
  there within `timeout_s`; 'auto' (Ray's own lookup, which fails at once) passes."""
  if address == 'auto' or ':' not in address:
    return
  host, port = address.rsplit(':', 1)
  try:
    with socket.create_connection((host.strip('[]'), int(port)), timeout=timeout_s):
      pass
  except ValueError:
    raise ConnectionError(f'Ray address {address!r}: the port must be a number '
                          '(HOST:PORT or auto).') from None
  except OSError as e:
    reason = 'timed out' if isinstance(e, socket.timeout) else (e.strerror or str(e))
    raise ConnectionError(
        f'Cannot connect to a Ray cluster at {address!r}: nothing answers there '
        f'({reason}). Start one with `ray start --head` (docs/cluster.md), or pass its '
        'HOST:PORT.') from None


def connect(address: str):
  """Connects this process to the cluster at `address` ('auto' or HOST:PORT) and
  returns the `ray` module. Never starts a cluster: a wrong address is an error naming
  it, within `_REACH_TIMEOUT_S` when nothing listens there (`check_reachable`)."""
  import ray  # pylint: disable=g-import-not-at-top

  if ray.is_initialized():
    return ray
  check_reachable(address)
  # Ray 2.52 warns at every connection that it will stop overriding
  # CUDA_VISIBLE_DEVICES for tasks without GPUs; this opts in to that now.
  os.environ.setdefault('RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO', '0')
  try:
    ray.init(address=address, logging_level='ERROR', log_to_driver=False,
             configure_logging=True, _node_ip_address=_head_ip_if_here(ray, address))
  except (ConnectionError, RuntimeError, ValueError) as e:
    raise ConnectionError(
        f'Cannot connect to a Ray cluster at {address!r}: {e}. Start one with '
        '`ray start --head` (docs/cluster.md), or pass its HOST:PORT.'
    ) from e
  return ray


def _head_ip_if_here(ray, address: str) -> Optional[str]:
  """The head's IP when the head runs on this machine, else None (Ray's default).

  A driver attaches to a raylet of its machine, which Ray finds by the IP that the
  last node started here recorded; with several nodes on one machine (a local
  cluster) that can be a worker node's, and the driver then dies with that node.
  On the head's machine the driver attaches to the head.
  """
  host = address.rsplit(':', 1)[0] if ':' in address else ''
  if host in ('', 'auto', 'localhost', '127.0.0.1'):
    return None if host in ('', 'auto') else ray.util.get_node_ip_address()
  try:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
      s.bind((host, 0))  # only an address of this machine can be bound
  except OSError:
    return None
  return host


class ClusterError(ConnectionError):
  """The cluster cannot run what was asked (too few CPUs for the actors or tasks)."""


def cluster_cpus(ray) -> int:
  return int(ray.cluster_resources().get('CPU', 0))


def check_cpus(ray, address: str, needed: int, what: str) -> int:
  """The cluster's CPUs; ClusterError if fewer than `needed` (Ray would wait forever)."""
  have = cluster_cpus(ray)
  if have < needed:
    raise ClusterError(f'{what} need {needed} CPUs; the Ray cluster at {address} has '
                       f'{have}. Add nodes or ask for fewer.')
  return have


@dataclasses.dataclass
class LocalCluster:
  address: str
  temp_dir: str
  nodes: list  # subprocess.Popen of each node's `ray start --block`; [0] the head

  def kill_node(self, index: int, sig: int = signal.SIGKILL) -> None:
    """Kills node `index`'s every process (a machine lost)."""
    _signal_group(self.nodes[index], sig)
    self.nodes[index].wait()

  def node_log(self, index: int) -> str:
    return os.path.join(self.temp_dir, f'node{index}.out')


@contextlib.contextmanager
def local_cluster(nodes: int = 2, cpus_per_node: int = 1, *,
                  object_store_bytes: int = 100 * 1000 * 1000,
                  env: Optional[dict] = None) -> Iterator[LocalCluster]:
  """A Ray cluster of `nodes` nodes on this machine, stopped when the block exits.

  `env`: extra environment of the nodes (e.g. Ray's `RAY_health_check_*` settings).
  """
  import portpicker  # pylint: disable=g-import-not-at-top
  import ray  # pylint: disable=g-import-not-at-top

  # Short: Ray's socket paths under it must fit a Unix socket name (107 bytes).
  temp_dir = tempfile.mkdtemp(prefix='flray', dir='/tmp')

  port = portpicker.pick_unused_port()
  # `ray start` registers a node given 127.0.0.1 under the machine's address; drivers
  # connect there so that Ray attaches them to the head's raylet (matched by IP).
  address = f'{ray.util.get_node_ip_address()}:{port}'
  node_env = dict(os.environ, RAY_USAGE_STATS_ENABLED='0', **(env or {}))
  common = ['--block', f'--num-cpus={cpus_per_node}',
            f'--object-store-memory={object_store_bytes}', '--num-gpus=0']
  cluster = LocalCluster(address, temp_dir, [])
  try:
    for k in range(nodes):
      role = ([f'--head', f'--port={port}', '--include-dashboard=false',
               '--disable-usage-stats', f'--temp-dir={temp_dir}',
               f'--ray-client-server-port={portpicker.pick_unused_port()}']
              if k == 0 else [f'--address={address}'])
      # Worker k on 127.0.0.(k+1): an address of its own (loopback), so that a driver
      # here is never attached to a worker node's raylet, and losing one is not its own.
      role += [f'--node-ip-address=127.0.0.{k + 1}',
               f'--dashboard-agent-listen-port={portpicker.pick_unused_port()}']
      with open(cluster.node_log(k), 'wb') as out:
        cluster.nodes.append(subprocess.Popen(
            [ray_executable(), 'start'] + role + common, stdout=out,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=node_env,
            start_new_session=True))
      _wait_started(cluster, k)
    yield cluster
  finally:
    for proc in reversed(cluster.nodes):
      _signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + 10.0
    for proc in cluster.nodes:
      try:
        proc.wait(timeout=max(0.1, deadline - time.monotonic()))
      except subprocess.TimeoutExpired:
        pass
      _signal_group(proc, signal.SIGKILL)  # what SIGTERM left of the group
      proc.wait()
    shutil.rmtree(temp_dir, ignore_errors=True)


def _wait_started(cluster: LocalCluster, k: int) -> None:
  log = cluster.node_log(k)
  deadline = time.monotonic() + _START_TIMEOUT_S
  while time.monotonic() < deadline:
    with open(log, errors='replace') as f:
      text = f.read()
    if _STARTED in text:
      return
    if cluster.nodes[k].poll() is not None:
      break
    time.sleep(0.1)
  with open(log, errors='replace') as f:
    tail = ''.join(f.readlines()[-15:])
  raise RuntimeError(f'Ray node {k} did not start (`ray start`, log {log}):\n{tail}')


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
  try:
    os.killpg(proc.pid, sig)
  except ProcessLookupError:
    pass


def processes_of(text: str) -> list[int]:
  """Pids of the live processes whose command line names `text`: a local cluster's
  temp dir (its raylets, GCS and agents all name it; what the tests check is empty
  afterwards), or `ray::<actor class>` (Ray names its workers so)."""
  from fl_analytics.core import runtime  # pylint: disable=g-import-not-at-top

  return sorted(runtime.pids_with_cmdline(lambda cmdline: text in cmdline))
