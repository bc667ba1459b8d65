"""Ray: sweeps and client groups on a two-node cluster started here (`ray start`).

One cluster for the module (a head and a worker node, one CPU each, on this machine),
stopped with every process it started when the module ends, however it ends; the last
test kills its worker node.
"""

import glob
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from fl_analytics.cluster import ray_cluster
from fl_analytics.sweeps import ray_launcher
from fl_analytics.core import rundir
from fl_analytics import sweeps
from fl_analytics.runs import training
from tests.sweeps_test import sweep_command
from tests.helpers import tiny_config

# A local two-node Ray cluster: outside `make test-fast`.
pytestmark = pytest.mark.ray

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A lost node is declared dead after ~1.5 s instead of Ray's default ~30 s.
_FAST_HEALTH_CHECKS = {'RAY_health_check_period_ms': '500',
                       'RAY_health_check_timeout_ms': '500',
                       'RAY_health_check_failure_threshold': '3'}


@pytest.fixture(scope='module')
def cluster():
  with ray_cluster.local_cluster(nodes=2, cpus_per_node=1, env=_FAST_HEALTH_CHECKS) as c:
    temp_dir = c.temp_dir
    assert len(ray_cluster.processes_of(temp_dir)) >= 4  # two raylets, GCS, agents
    yield c
  assert ray_cluster.processes_of(temp_dir) == [], 'Ray processes left running'
  assert not os.path.exists(temp_dir)


def _actor_processes() -> list[int]:
  return ray_cluster.processes_of('ray::ClientGroupActor')


def test_run_on_actors_equals_local_run_with_same_groups_also_after_a_lost_actor(
    cluster, tmp_path):
  # The vectorized engine's shards; mapreduce's groups go through the same actors
  # (`ray_engine.ActorGroups`), their work through the code of one machine.
  overrides = {'num_rounds': 4, 'clients_per_round': 30, 'runtime.client_groups': 2,
               'dp.mechanism': 'gaussian_adaptive', 'runtime.engine': 'vectorized'}
  training.train_and_evaluate(tiny_config(**overrides), str(tmp_path / 'local'))

  killed = []

  def kill_an_actor(row):  # after round 1: round 2 starts while actor 0 is lost
    if row['round'] == 1:
      pids = _actor_processes()
      assert len(pids) == 2, pids
      threading.Timer(0.01, os.kill, (pids[0], signal.SIGKILL)).start()
      killed.append(pids[0])

  training.train_and_evaluate(
      tiny_config(**overrides, **{'runtime.ray_address': cluster.address}),
      str(tmp_path / 'ray'), on_round=kill_an_actor)
  assert killed
  local = rundir.read_csv(str(tmp_path / 'local' / rundir.METRICS_FILE))
  remote = rundir.read_csv(str(tmp_path / 'ray' / rundir.METRICS_FILE))
  assert len(local) == len(remote) == 4
  for a, b in zip(local, remote):
    del a['round_seconds'], b['round_seconds']
    assert a == b, (a, b)
  evaluations = [rundir.read_json(str(tmp_path / run / 'evaluation.json'))
                 for run in ('local', 'ray')]
  for e in evaluations:  # the digests of files with timings (metrics.csv) differ
    del e['files']
  assert evaluations[0] == evaluations[1]
  # The engine's actors end with the run (Ray kills them asynchronously).
  deadline = time.monotonic() + 15
  while _actor_processes() and time.monotonic() < deadline:
    time.sleep(0.2)
  assert _actor_processes() == []


def test_without_an_address_nothing_imports_ray():
  code = ('import sys, fl_analytics.sweeps, fl_analytics.engines, fl_analytics.cluster.ray_cluster, '
          'fl_analytics.sweeps.ray_launcher, fl_analytics.engines.ray_actors; '
          'sys.exit(1 if "ray" in sys.modules else 0)')
  assert subprocess.run([sys.executable, '-c', code], cwd=REPO).returncode == 0


def test_ray_address_is_checked_before_a_run(tmp_path):
  with pytest.raises(training.InvalidSettingsError, match='runtime.engine=cpp has none'):
    training.train_and_evaluate(
        tiny_config(**{'runtime.engine': 'cpp', 'runtime.ray_address': 'auto'}),
        str(tmp_path / 'run'))


def test_more_actors_than_the_cluster_has_cpus_is_an_error_not_a_wait(cluster, tmp_path):
  with pytest.raises(ray_cluster.ClusterError, match='client_groups=3 actors .* need 3 '
                     'CPUs; the Ray cluster at .* has 2'):
    training.train_and_evaluate(
        tiny_config(**{'runtime.ray_address': cluster.address, 'runtime.client_groups': 3}),
        str(tmp_path / 'run'))


def test_shipped_back_run_directory_arrives_whole_and_starts_from_the_drivers_copy(
    cluster, tmp_path):
  workdir = tmp_path / 'sweep'
  point = sweeps.Point('p', {}, 1)
  run_dir = workdir / 'p'
  os.makedirs(run_dir)
  (run_dir / 'before.txt').write_text('from the driver')
  os.makedirs(workdir / sweeps.LOG_DIR)
  log_path = str(workdir / sweeps.LOG_DIR / 'p.log')
  script = textwrap.dedent('''
      import os, sys
      d = sys.argv[1]
      assert open(os.path.join(d, 'before.txt')).read() == 'from the driver'
      open(os.path.join(d, 'after.txt'), 'w').write(d)
      print('point ran in', d)
  ''')
  command = lambda p, d: [sys.executable, '-c', script, d]
  with ray_launcher.RayLauncher(cluster.address, str(workdir), transfer='ship') as launcher:
    code, detail = launcher.wait(launcher.start(point, str(run_dir), log_path, command))
    node_dir = os.path.join(ray_launcher.NODE_DIR, launcher._sweep_id)
  assert code == 0 and 'shipped back' in detail
  assert sorted(os.listdir(run_dir)) == ['after.txt', 'before.txt']
  ran_in = (run_dir / 'after.txt').read_text()
  assert ran_in.startswith(ray_launcher.NODE_DIR) and ran_in != str(run_dir)
  assert 'point ran in' in open(log_path).read()
  assert not os.path.exists(node_dir)  # the node's copy is gone
  assert glob.glob(str(workdir / sweeps.LOG_DIR / '.ray-sweep-*')) == []


def test_sweep_on_cluster_survives_a_lost_node_and_gives_the_local_summary(
    cluster, tiny_sweep, tmp_path):
  """Last in the module: it kills the cluster's worker node."""
  config, local_dir, local = tiny_sweep  # (conftest.py) the same sweep, run here
  assert local.returncode == 1, local.stdout + local.stderr  # the refused point
  workdir = tmp_path / 'ray'
  sweep = subprocess.Popen(
      sweep_command(config, workdir, f'--ray_address={cluster.address}'),
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  try:
    # Both nodes busy with a point each: then the worker node is lost.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(
        [f for f in glob.glob(str(workdir / 'logs' / '*.log'))
         if '[ray]' in open(f).read()]) < 2:
      time.sleep(0.2)
    time.sleep(2)
    cluster.kill_node(1)
    out, _ = sweep.communicate(timeout=300)
  finally:
    if sweep.poll() is None:
      sweep.kill()
  assert sweep.returncode == 1, out
  assert 'as Ray tasks on' in out
  assert '1 point(s) failed: mechanism-gaussian_fixed_clip--1_seed-0' in out
  assert 'dp.clip must be a finite number > 0' in out  # the end of its log
  # The point that was on the lost node started again (its log has both starts).
  starts = [open(f).read().count('[ray] mechanism-')
            for f in glob.glob(str(workdir / 'logs' / '*.log'))]
  assert max(starts) == 2 and sum(starts) == 4, starts
  assert (workdir / 'summary.csv').read_text() == (local_dir / 'summary.csv').read_text()
  for name in ('mechanism-none_seed-0', 'mechanism-gaussian_adaptive_noise_multiplier-1_seed-0'):
    assert sweeps.is_complete(str(workdir / name), 2)
