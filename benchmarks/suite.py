"""What `experiments/benchmark.py` measures: the pipeline's rounds against their floor.

- `pipeline_round_seconds`: seconds per round of `training.train_and_evaluate` itself
  (its `round_seconds` column: sampling, local training, aggregation, noise), the
  median after warm-up rounds, for the churn config with adaptive-clipping DP.
- `floor_round_seconds` (`fl_analytics.engines.floor`): the same rounds' work in plain
  TensorFlow on the same clients, and that loop's trace count.
- `sweep_throughput`: rounds per second across the points of a small parallel sweep.
- `memory_profile`: resident memory of a long run at two rounds.
"""

from __future__ import annotations

import functools
import math
import os
import resource
import sys
import tempfile
import time
from typing import Callable, Optional, Sequence

import numpy as np

from fl_analytics.core import config_files
from fl_analytics.core import rundir
from fl_analytics.privacy import sampling
from fl_analytics import sweeps
from fl_analytics import tasks
from fl_analytics.data import clients
from fl_analytics.data import features
from fl_analytics.data import generators

# The modules that train (`training`, `floor`) import TensorFlow; they are imported where
# they are used, so that a child process measuring something else (`ingest_point`)
# carries no TensorFlow in its memory.


def _proc_status_mb(field: str, pid: Optional[int] = None) -> float:
  """A memory field (VmRSS, VmHWM) of a process's /proc status, in MiB."""
  with open(f'/proc/{pid or "self"}/status') as f:
    for line in f:
      if line.startswith(field + ':'):
        return int(line.split()[1]) / 1024
  raise RuntimeError(f'{field} not found in /proc status')


def rss_mb(pid: Optional[int] = None) -> float:
  """Resident memory of a process now, in MiB (Linux /proc)."""
  return _proc_status_mb('VmRSS', pid)


def peak_rss_mb() -> dict[str, float]:
  """Peak resident memory of this process (its VmHWM; `getrusage`'s ru_maxrss would
  carry over the peak of the process that forked it, Linux keeping it across exec) and
  of its largest finished child, MiB."""
  return {'self': _proc_status_mb('VmHWM'),
          'children': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


# The churn config the benchmark times (its defaults: adaptive-clipping DP).
CHURN_CONFIG = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs', 'churn.py')


def floor_cohorts(config, clients_per_round: int, *, rounds: int) -> list[list]:
  """The clients' `(x, y)` of rounds 1 to rounds + 1 of `config`, as the pipeline
  samples them."""
  data = tasks.get('churn').population(config.data, seed=config.data.seed)
  return [data.train_examples_many(sampling.cohort(
      sampling=config.sampling, population_size=data.population_size,
      clients_per_round=clients_per_round, seed=config.seed, round_num=r))
          for r in range(1, rounds + 2)]


def benchmark_config(clients_per_round: int, num_rounds: int):
  config = config_files.load(CHURN_CONFIG)
  config.clients_per_round = clients_per_round
  config.num_rounds = num_rounds
  config.eval_every = num_rounds  # evaluation only after the last round, untimed
  # Adaptive clipping needs noise < 0.1 * cohort; 0.5 suits every cohort from 10 up.
  # The noise level does not change the cost of a round.
  config.dp.noise_multiplier = 0.5
  return config


def pipeline_round_seconds(clients_per_round: int, *, rounds: int, warmup: int = 2,
                           engine: str = 'mapreduce') -> float:
  """Median `round_seconds` of the pipeline's loop over `rounds` rounds after warm-up."""
  from fl_analytics.runs import training  # pylint: disable=g-import-not-at-top

  config = benchmark_config(clients_per_round, warmup + rounds)
  config.runtime.engine = engine
  with tempfile.TemporaryDirectory() as workdir:
    training.train_and_evaluate(config, workdir)
    rows = rundir.read_csv(os.path.join(workdir, rundir.METRICS_FILE))
  return float(np.median([float(r['round_seconds']) for r in rows[warmup:]]))


def floor_round_seconds(clients_per_round: int, *, rounds: int, config=None,
                        cohorts=None) -> tuple[float, int]:
  """The floor on the same clients the pipeline samples: (median seconds, traces).

  `config`: the pipeline's config (default: `benchmark_config`); `cohorts`: its
  `floor_cohorts`, if already made."""
  from fl_analytics.engines import floor  # pylint: disable=g-import-not-at-top

  config = config or benchmark_config(clients_per_round, rounds + 1)
  cohorts = cohorts or floor_cohorts(config, clients_per_round, rounds=rounds)
  return floor.floor_round_seconds(
      rounds, cohorts,
      num_features=features.num_features(generators.vocabulary(config.data)),
      hidden_units=config.model.hidden_units, seed=config.seed,
      client_learning_rate=config.client.learning_rate,
      batch_size=config.client.batch_size, local_epochs=config.client.local_epochs,
      server_learning_rate=config.server.learning_rate,
      server_momentum=config.server.momentum,
      noise_multiplier=config.dp.noise_multiplier, clip=config.dp.clip,
      clients_per_round=clients_per_round,
      adaptive=config.dp.mechanism == 'gaussian_adaptive',
      target_unclipped_quantile=config.dp.target_unclipped_quantile,
      clip_learning_rate=config.dp.clip_learning_rate)


def sweep_throughput(*, points: int, rounds: int, parallel: Optional[int],
                     train_script: str, ray_address: Optional[str] = None
                     ) -> dict[str, float]:
  """Rounds per second across `points` sweep points of `rounds` rounds, run in parallel
  (as subprocesses here, or with `ray_address` as Ray tasks of one CPU each).

  Wall time includes each point's start-up (imports, data, building the process),
  which is what a sweep pays.
  """
  overrides = [{'seed': s} for s in range(points)]
  point_list = [sweeps.Point(sweeps.run_name(o), {'num_rounds': rounds,
                                                  'eval_every': rounds, **o},
                             rounds) for o in overrides]
  def command(point, run_dir):
    return [sys.executable, train_script, f'--config={CHURN_CONFIG}',
            f'--workdir={run_dir}'] + [
        f'--config.{k}={v}' for k, v in point.overrides.items()]

  with tempfile.TemporaryDirectory() as workdir:
    t0 = time.monotonic()
    results = sweeps.run_sweep(point_list, workdir, command=command, parallel=parallel,
                               log=lambda _: None, ray_address=ray_address)
    seconds = time.monotonic() - t0
    failed = [r.point.name for r in results if r.status == 'failed']
    if failed:
      raise RuntimeError(f'sweep points failed: {failed}')
    round_seconds = [float(row['round_seconds']) for r in results
                     for row in rundir.read_csv(os.path.join(
                         workdir, r.point.name, rundir.METRICS_FILE))]
  return {'points': points, 'rounds_per_point': rounds, 'on_ray': bool(ray_address),
          'parallel': parallel or (points if ray_address else sweeps.default_parallel()),
          'wall_seconds': seconds, 'rounds_per_second': points * rounds / seconds,
          'median_round_seconds_in_sweep': float(np.median(round_seconds))}


def memory_profile(num_rounds: int, *, at: int = 50,
                   progress: Callable[[str], None] = print) -> dict[str, float]:
  """Resident memory after round `at` and after round `num_rounds` of one long run."""
  if num_rounds <= at:
    raise ValueError(f'--memory_rounds must be > {at}. Found {num_rounds}.')
  from fl_analytics.runs import training  # pylint: disable=g-import-not-at-top

  config = benchmark_config(50, num_rounds)
  config.eval_every = 50
  samples = {}

  def on_round(row):
    r = row['round']
    if r in (at, num_rounds) or r % 100 == 0:
      samples[r] = rss_mb()
      progress(f'memory: round {r}/{num_rounds}: {samples[r]:.0f} MiB resident')

  with tempfile.TemporaryDirectory() as workdir:
    training.train_and_evaluate(config, workdir, on_round=on_round)
  return {'rounds': num_rounds, f'rss_mb_round_{at}': samples[at],
          f'rss_mb_round_{num_rounds}': samples[num_rounds],
          'growth': samples[num_rounds] / samples[at] - 1.0,
          'samples': {str(k): v for k, v in sorted(samples.items())}}


def rows_table(rows: Sequence[dict]) -> str:
  lines = [f'{"clients/round":>13}  {"pipeline s/round":>16}  {"floor s/round":>13}  '
           f'{"ratio":>6}']
  for r in rows:
    lines.append(f'{r["clients_per_round"]:>13}  {r["pipeline_round_s"]:>16.3f}  '
                 f'{r["floor_round_s"]:>13.3f}  {r["ratio"]:>6.2f}')
  return '\n'.join(lines)


# --- Population scale (issue 14): `experiments/benchmark.py --scale` ----------------

SCALE_POPULATIONS = (10_000, 100_000, 1_000_000)
SCALE_COHORTS = (100, 1_000, 5_000)
# Below 1 / population for every population measured (check_budget refuses more).
SCALE_DELTA = 1e-7


def scale_config(num_users: int, clients_per_round: int, num_rounds: int):
  """The churn config (adaptive-clipping DP) at `num_users` synthetic users, with
  evaluation bounded (1,000 held-out users, no personalization) and only at the end."""
  config = benchmark_config(clients_per_round, num_rounds)
  config.data.num_users = num_users
  config.dp.delta = SCALE_DELTA
  config.evaluation.max_users = 1000
  config.evaluation.final_max_users = 1000
  config.evaluation.personalization_steps = 0
  return config


def scale_point(num_users: int, clients_per_round: int, *, rounds: int, warmup: int,
                launched: float, source: str = 'synthetic', engine: str = 'mapreduce',
                mechanism: str = 'gaussian_adaptive', client_groups: int = 0,
                ray_address: Optional[str] = None) -> dict[str, float]:
  """One run at `num_users` users in this process (a fresh one: `run_in_child`).

  `launched`: `time.time()` when the parent started this process, so the time to the
  first round includes the interpreter's start and the imports, as a user sees it.
  `source`: `data.source` (an event file's users replace `num_users`).
  `client_groups`, `ray_address`: `runtime.*` (with an address, the groups run on Ray
  actors, which make the users: `users_made` then counts none).
  """
  from fl_analytics.runs import training  # pylint: disable=g-import-not-at-top

  config = scale_config(num_users, clients_per_round, warmup + rounds)
  config.data.source = source
  config.runtime.engine = engine
  config.runtime.client_groups = client_groups
  config.runtime.ray_address = ray_address
  config.dp.mechanism = mechanism
  first_round = {}

  def on_round(row):
    if row['round'] == 1:
      first_round['start'] = time.time() - row['round_seconds']

  made = {}
  real_build = clients.build_data

  def build_data(*args, **kwargs):
    made['data'] = real_build(*args, **kwargs)
    return made['data']

  clients.build_data = build_data  # to read how many users the run made
  try:
    with tempfile.TemporaryDirectory() as workdir:
      training.train_and_evaluate(config, workdir, on_round=on_round)
      rows = rundir.read_csv(os.path.join(workdir, rundir.METRICS_FILE))
  finally:
    clients.build_data = real_build
  seconds = [float(r['round_seconds']) for r in rows[warmup:]]
  return {'num_users': made['data'].population_size + made['data'].num_eval_users
                       + made['data'].num_opted_out,
          'clients_per_round': clients_per_round,
          'first_round_start_s': first_round['start'] - launched,
          'round_s': float(np.median(seconds)),
          'ms_per_client': 1e3 * float(np.median(
              [s / max(1, int(r['cohort_size'])) for s, r in zip(seconds, rows[warmup:])])),
          'peak_rss_mb': peak_rss_mb()['self'],
          'users_made': made['data'].users_made,
          'rounds': len(rows), 'engine': engine, 'mechanism': mechanism,
          'client_groups': client_groups, 'on_ray': bool(ray_address)}


def floor_point(num_users: int, clients_per_round: int, *, rounds: int, warmup: int,
                launched: float) -> dict[str, float]:
  """The plain-TF floor of `scale_config`'s rounds in this process (a fresh one:
  `run_in_child`): median seconds per round, and the mean examples per client."""
  del launched
  config = scale_config(num_users, clients_per_round, warmup + rounds)
  cohorts = floor_cohorts(config, clients_per_round, rounds=rounds)
  floor_s, _ = floor_round_seconds(clients_per_round, rounds=rounds, config=config,
                                   cohorts=cohorts)
  # What a round trains on: the mean local examples of round 1's clients.
  return {'floor_round_s': floor_s,
          'examples_per_client': float(np.mean([len(y) for _, y in cohorts[0]]))}


def ingest_point(path: str, *, launched: float) -> dict[str, float]:
  """Builds the event store of `path` in this process (a fresh one, `run_in_child`,
  which imports no TensorFlow): seconds and peak memory."""
  from fl_analytics.data import event_store  # pylint: disable=g-import-not-at-top

  t0 = time.monotonic()
  store = event_store.open_store(path, progress=lambda line: print(line, flush=True))
  return {'events': store.num_events, 'users': store.num_users,
          'file_mb': os.path.getsize(path) / 2**20,
          'ingest_s': time.monotonic() - t0, 'process_s': time.time() - launched,
          'peak_rss_mb': peak_rss_mb()['self']}


def run_in_child(function: str, *args, **kwargs) -> dict:
  """`benchmark.<function>(*args, **kwargs, launched=...)` in a fresh process: its own
  start-up time and peak memory. Its progress goes to this process's stdout."""
  import json  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top

  code = ('import json, sys, time; from benchmarks import suite as m; '
          f'a, k = json.loads(sys.argv[1]); '
          f'print("RESULT " + json.dumps(m.{function}(*a, **k, '
          'launched=float(sys.argv[2]))))')
  command = [sys.executable, '-c', code, json.dumps([args, kwargs]), repr(time.time())]
  with tempfile.TemporaryFile('w+') as stderr:
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr,
                          text=True) as child:
      results = []
      for line in child.stdout:
        if line.startswith('RESULT '):
          results.append(line)
        else:
          print(f'  {line}', end='', flush=True)
    if child.returncode or not results:
      stderr.seek(0)
      raise RuntimeError(f'{function}{args} failed with exit code {child.returncode}:\n'
                         + '\n'.join(stderr.read().splitlines()[-20:]))
  return json.loads(results[-1][len('RESULT '):])


def run_scale_point(num_users: int, clients_per_round: int, *, rounds: int,
                    warmup: int, source: str = 'synthetic', engine: str = 'mapreduce',
                    mechanism: str = 'gaussian_adaptive', client_groups: int = 0,
                    ray_address: Optional[str] = None) -> dict[str, float]:
  """`scale_point` in a fresh process."""
  return run_in_child('scale_point', num_users, clients_per_round, rounds=rounds,
                      warmup=warmup, source=source, engine=engine, mechanism=mechanism,
                      client_groups=client_groups, ray_address=ray_address)


def write_event_file(path: str, num_events: int, *, seed: int = 0) -> dict[str, float]:
  """A CSV event file of synthetic users (90 days), at least `num_events` rows."""
  from fl_analytics.data import events  # pylint: disable=g-import-not-at-top
  from fl_analytics.data import synthetic  # pylint: disable=g-import-not-at-top

  def logs():
    total, u = 0, 0
    while total < num_events:
      batch = synthetic.generate_users(np.arange(u, u + 1000), seed=seed, num_days=90,
                                       quantity_skew=1.0, label_skew=1.0, feature_skew=1.0)
      for k in range(len(batch)):
        if total >= num_events:
          break
        log = batch.log(k)
        total += len(log.events)
        yield log
      u += 1000

  t0 = time.monotonic()
  rows = events.write_events(logs(), path)
  return {'events': rows, 'write_s': time.monotonic() - t0}


def matmul_flops_per_second(n: int = 1024, repeats: int = 5) -> float:
  """Measured float32 matmul throughput of this machine (TensorFlow, all cores)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  a = tf.random.stateless_normal([n, n], seed=[0, 1])
  b = tf.random.stateless_normal([n, n], seed=[0, 2])
  tf.linalg.matmul(a, b).numpy()  # warm-up
  best = math.inf
  for _ in range(repeats):
    t0 = time.perf_counter()
    tf.linalg.matmul(a, b).numpy()
    best = min(best, time.perf_counter() - t0)
  return 2 * n**3 / best


def memory_bytes_per_second(megabytes: int = 512, repeats: int = 5) -> float:
  """Measured memory bandwidth of this machine: bytes read and written per second by
  an elementwise TensorFlow op over a large float32 array (all cores)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  a = tf.zeros([megabytes * 2**18])
  add = tf.function(lambda t: t + 1.0)
  add(a)  # warm-up
  best = math.inf
  for _ in range(repeats):
    t0 = time.perf_counter()
    add(a)
    best = min(best, time.perf_counter() - t0)
  return 2 * megabytes * 2**20 / best


# Bytes of weight traffic per parameter and client step on the `vectorized` engine: the
# forward pass and the backward pass each read the client's weights, the backward
# writes their gradients, the update reads both and writes the weights (6 float32).
STEP_BYTES_PER_PARAMETER = 24


def round_flops(config, examples_per_client: float, clients_per_round: int) -> float:
  """The arithmetic of a round of the churn MLP: forward and backward passes (about 3x
  the forward's 2 FLOPs per weight) over every local example of every client."""
  sizes = tasks.get(config.task).tensor_sizes(config)
  per_example = 6 * sum(sizes)
  return per_example * examples_per_client * config.client.local_epochs * clients_per_round


def scale_table(rows: Sequence[dict]) -> str:
  lines = [f'{"users":>9}  {"clients":>7}  {"first round s":>13}  {"round s":>8}  '
           f'{"ms/client":>9}  {"peak RSS MiB":>12}  {"users made":>10}']
  for r in rows:
    lines.append(f'{r["num_users"]:>9}  {r["clients_per_round"]:>7}  '
                 f'{r["first_round_start_s"]:>13.1f}  {r["round_s"]:>8.3f}  '
                 f'{r["ms_per_client"]:>9.3f}  {r["peak_rss_mb"]:>12.0f}  '
                 f'{r["users_made"]:>10}')
  return '\n'.join(lines)


def user_costs(num_users: int = 2000, batch: int = 1000,
               generator: str = generators.DEFAULT) -> dict[str, float]:
  """Milliseconds per user to generate a synthetic log with `generator` and to
  featurize it (churn): users made `batch` at a time (as a round makes its cohort)
  and one at a time."""
  from fl_analytics.data import synthetic  # pylint: disable=g-import-not-at-top

  config = benchmark_config(10, 1)
  config.data.generator = generator
  data = config.data
  generate_users = generators.get(generator).generate_users
  knobs = dict(seed=0, num_days=data.num_days, quantity_skew=data.quantity_skew,
               label_skew=data.label_skew, feature_skew=data.feature_skew)
  examples = functools.partial(tasks.get('churn').examples_fn(data),
                               origin_timestamp=synthetic.ORIGIN_TIMESTAMP,
                               num_days=data.num_days)
  out = {'users': num_users, 'batch': batch, 'generator': generator}
  for name, size in (('', batch), ('_alone', 1)):
    made, generate, featurize = [], 0.0, 0.0
    for start in range(0, num_users, size):
      t0 = time.perf_counter()
      logs = generate_users(np.arange(start, min(num_users, start + size)), **knobs)
      t1 = time.perf_counter()
      examples(logs.timestamps, logs.events, logs.offsets)
      generate, featurize = generate + t1 - t0, featurize + time.perf_counter() - t1
      made.append(np.diff(logs.offsets))
    out[f'generate_ms_per_user{name}'] = 1e3 * generate / num_users
    out[f'featurize_ms_per_user{name}'] = 1e3 * featurize / num_users
  out['events_per_user'] = float(np.mean(np.concatenate(made)))
  return out


def ray_task_overhead(address: str, *, tasks: int = 50) -> dict[str, float]:
  """Seconds to connect a driver to the cluster at `address`, and the round trip of
  a task that does nothing (one at a time, the median of `tasks`): what every sweep
  point and every round's call on an actor pays on top of its work."""
  from fl_analytics.cluster import ray_cluster  # pylint: disable=g-import-not-at-top

  t0 = time.monotonic()
  ray = ray_cluster.connect(address)
  connect_s = time.monotonic() - t0
  try:
    noop = ray.remote(num_cpus=1)(_noop)
    ray.get(noop.remote())  # a worker process started
    trips = []
    for _ in range(tasks):
      t = time.monotonic()
      ray.get(noop.remote())
      trips.append(time.monotonic() - t)
  finally:
    ray.shutdown()
  return {'connect_s': connect_s, 'task_round_trip_ms': 1e3 * float(np.median(trips))}


def _noop():
  return None


def user_cost_line(u: dict) -> str:
  return (f'a user of {u.get("generator", generators.DEFAULT)} ({u["events_per_user"]:.0f} '
          f'events): made {u["batch"]} at a time '
          f'{u["generate_ms_per_user"]:.3f} ms to generate, {u["featurize_ms_per_user"]:.3f} '
          f'ms to featurize; one at a time {u["generate_ms_per_user_alone"]:.3f} and '
          f'{u["featurize_ms_per_user_alone"]:.3f} ms')


def scale_populations(populations, *, rounds: int, warmup: int) -> list[dict]:
  """A run per population at 1,000 clients per round, on both engines (fresh
  processes); each row the mapreduce point with the vectorized one inside."""
  rows = []
  for users in populations:
    print(f'{users} users, 1000 clients per round ...', flush=True)
    point = run_scale_point(users, 1000, rounds=rounds, warmup=warmup)
    print(scale_table([point]).splitlines()[-1], flush=True)
    print(f'{users} users, 1000 clients per round: vectorized engine ...', flush=True)
    fast = run_scale_point(users, 1000, rounds=rounds, warmup=warmup, engine='vectorized')
    print(scale_table([fast]).splitlines()[-1], flush=True)
    rows.append({**point, 'vectorized': fast})
  return rows


def scale_cohorts(cohorts, populations: list[dict], *, rounds: int, warmup: int,
                  flops_per_s: float) -> list[dict]:
  """Per cohort at 100,000 users: both engines against the plain-TF floor and the
  arithmetic bound (a population row of the same cohort is reused)."""
  rows = []
  for cohort in cohorts:
    print(f'100000 users, {cohort} clients per round: pipeline ...', flush=True)
    point = next((p for p in populations
                  if p['num_users'] == 100_000 and p['clients_per_round'] == cohort),
                 None) or run_scale_point(100_000, cohort, rounds=rounds, warmup=warmup)
    print(f'100000 users, {cohort} clients per round: floor ...', flush=True)
    floor = run_in_child('floor_point', 100_000, cohort, rounds=rounds, warmup=warmup)
    floor_s, examples = floor['floor_round_s'], floor['examples_per_client']
    config = scale_config(100_000, cohort, warmup + rounds)
    bound_s = round_flops(config, examples, cohort) / flops_per_s
    print(f'100000 users, {cohort} clients per round: vectorized engine ...', flush=True)
    fast = (point.get('vectorized')
            or run_scale_point(100_000, cohort, rounds=rounds, warmup=warmup,
                               engine='vectorized'))
    rows.append({
        **point, 'floor_round_s': floor_s, 'floor_ms_per_client': 1e3 * floor_s / cohort,
        'speedup_over_floor': floor_s / point['round_s'],
        'examples_per_client': examples, 'arithmetic_bound_s': bound_s,
        'times_arithmetic_bound': point['round_s'] / bound_s,
        'vectorized': {'round_s': fast['round_s'], 'ms_per_client': fast['ms_per_client'],
                       'speedup_over_floor': floor_s / fast['round_s'],
                       'times_arithmetic_bound': fast['round_s'] / bound_s}})
  return rows


def scale_report(result: dict) -> str:
  """The tables of `--scale` (and the spread of round times across populations, which
  it adds to `result`)."""
  lines = [scale_table(result['populations']),
           scale_table([r['vectorized'] for r in result['populations']])]
  rows = result['populations']
  if len(rows) > 1:
    for key, engine_rows in (('', rows), ('_vectorized', [r['vectorized'] for r in rows])):
      spread = (max(r['round_s'] for r in engine_rows)
                / min(r['round_s'] for r in engine_rows) - 1)
      result[f'round_time_spread_across_populations{key}'] = spread
      lines.append(f'round time across populations{key.replace("_", ", ")}: within '
                   f'{100 * spread:.1f}% (target: 10%)')
  lines.append(f'\n{"clients":>7}  {"ms/client":>9}  {"floor ms/client":>15}  '
               f'{"speed-up over floor":>19}  {"x arithmetic bound":>18}')
  for r in result['cohorts']:
    lines.append(f'{r["clients_per_round"]:>7}  {r["ms_per_client"]:>9.3f}  '
                 f'{r["floor_ms_per_client"]:>15.3f}  {r["speedup_over_floor"]:>19.2f}  '
                 f'{r["times_arithmetic_bound"]:>18.0f}')
  lines.append(f'\nvectorized engine: {"clients":>7}  {"ms/client":>9}  '
               f'{"over floor":>10}  {"x arithmetic bound":>18}')
  for r in result['cohorts']:
    f = r['vectorized']
    lines.append(f'{"":>19}{r["clients_per_round"]:>7}  {f["ms_per_client"]:>9.3f}  '
                 f'{f["speedup_over_floor"]:>10.2f}  {f["times_arithmetic_bound"]:>18.0f}')
  lines.append(f'matmul throughput here: {result["matmul_gflops_per_s"]:.1f} GFLOP/s')
  return '\n'.join(lines)


# --- The engines per model, mechanism and cohort (issue 27) -------------------------
# `experiments/benchmark.py --scale` (section `engines`).

NEXT_ACTION_CONFIG = os.path.join(os.path.dirname(CHURN_CONFIG), 'next_action.py')
# Model name -> (its config file, overrides): the small churn MLP of the headline, the
# larger churn model of `results/scale/` and the two next-action models, on the
# calibrated population where the model was built for it.
ENGINE_MODELS = {
    'churn_mlp': (CHURN_CONFIG, {}),
    'churn_large': (CHURN_CONFIG, {'data.generator': 'app_paths',
                                   'model.hidden_units': 1280}),
    'next_action_conv': (NEXT_ACTION_CONFIG, {'data.generator': 'app_paths'}),
    'next_action_gru': (NEXT_ACTION_CONFIG, {'data.generator': 'app_paths',
                                             'model.architecture': 'gru',
                                             'data.context_gaps': True}),
    # 1,012,501 parameters: the bounded-memory check (5,000 clients of a 10^6-parameter
    # model within the engine's default memory budget).
    'churn_1m': (CHURN_CONFIG, {'data.generator': 'app_paths',
                                'model.hidden_units': 12_500}),
}
MEMORY_MODEL = 'churn_1m'
# Options measured with a mechanism, as `MECHANISM+OPTION` in the benchmark's mechanism
# column: their client-side steps run as TFF's client graph on the `vectorized` engine.
ENGINE_OPTIONS = {'compression': {'compression.bits': 8, 'compression.threshold': 0},
                  'secure_sum': {'dp.secure_sum': True},
                  # the same secure sum over the SecAgg+ protocol (benchmarks/secagg.py)
                  'secagg': {'dp.secure_sum': True, 'secure_aggregation.sum': 'protocol'}}
ENGINE_USERS = 20_000  # enough for 5,000 clients per round without repeats in a pass
ENGINE_COHORTS = (100, 1_000, 5_000)


# What the `vectorized` engine runs through TFF's client graph, client by client.
GRAPH_PATH = ('distributed', 'gaussian_fixed+compression', 'gaussian_fixed+secure_sum')


def engine_config(model: str, clients_per_round: int, num_rounds: int, *, mechanism: str,
                  engine: str):
  """`model`'s config at `ENGINE_USERS` users with `mechanism` (on its first sampling
  scheme, reproducible so that the benchmark can count what a round trained) on
  `engine`, evaluated only at the end on few users."""
  from fl_analytics.privacy import mechanisms  # pylint: disable=g-import-not-at-top

  path, overrides = ENGINE_MODELS[model]
  mechanism, *option = mechanism.split('+')
  overrides = {**overrides, **(ENGINE_OPTIONS[option[0]] if option else {})}
  config = config_files.apply_overrides(config_files.load(path), {
      **overrides, 'data.num_users': ENGINE_USERS, 'clients_per_round': clients_per_round,
      'num_rounds': num_rounds, 'eval_every': num_rounds, 'dp.mechanism': mechanism,
      'sampling': mechanisms.get(mechanism).samplings[0], 'dp.noise_multiplier': 0.5,
      'dp.target_epsilon': None, 'dp.delta': SCALE_DELTA,
      'dp.reproducible_sampling': True, 'runtime.engine': engine,
      'evaluation.max_users': 200, 'evaluation.final_max_users': 200,
      'evaluation.personalization_steps': 0}, source='benchmark')
  return config


def forward_flops(keras_model, input_spec) -> int:
  """Floating-point operations of the model's forward pass on one example (TensorFlow's
  graph profiler over the call `fl_analytics.engines.stacked` traces)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from fl_analytics.engines import stacked  # pylint: disable=g-import-not-at-top

  options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
  options['output'] = 'none'
  graph = stacked.traced_forward(keras_model, input_spec).graph
  return int(tf.compat.v1.profiler.profile(graph=graph, options=options).total_float_ops)


def engine_point(model: str, clients_per_round: int, *, mechanism: str, engine: str,
                 rounds: int, warmup: int, launched: float) -> dict:
  """One run of `engine_config` in this process (a fresh one: `run_in_child`): the
  median round time after warm-up, the examples and client steps of the first measured
  round (the same cohort again, as sampled: a private run's metrics.csv does not keep
  them) and the model's training FLOPs per example (3x the forward pass: the backward
  costs two)."""
  del launched
  from fl_analytics.runs import training  # pylint: disable=g-import-not-at-top

  config = engine_config(model, clients_per_round, warmup + rounds, mechanism=mechanism,
                         engine=engine)
  task = tasks.get(config.task)
  with tempfile.TemporaryDirectory() as workdir:
    training.train_and_evaluate(config, workdir)
    rows = rundir.read_csv(os.path.join(workdir, rundir.METRICS_FILE))
    resolved = rundir.read_json(os.path.join(workdir, rundir.CONFIG_FILE))['resolved']
  data = task.build_data(config)
  cohort = training.sample_round(config, population_size=data.population_size,
                                 seed=config.seed, round_num=warmup + 1)
  caps = cohort.caps if cohort.caps is not None else [-1] * len(cohort.reporting)
  batch = config.client.batch_size
  trained = [min(len(y) * config.client.local_epochs, (cap if cap >= 0 else 10**9) * batch)
             for (_, y), cap in zip(data.train_examples_many(cohort.reporting), caps)]
  examples, steps = sum(trained), sum(-(-n // batch) for n in trained)
  seconds = float(np.median([float(r['round_seconds']) for r in rows[warmup:]]))
  return {'model': model, 'client_steps_per_round': steps, 'clients_per_round': clients_per_round, 'mechanism': mechanism,
          'engine': resolved['engine'], 'round_s': seconds,
          'ms_per_client': 1e3 * seconds / clients_per_round,
          'parameters': int(sum(task.tensor_sizes(config))),
          'examples_per_round': int(examples),
          'train_flops_per_example': 3 * forward_flops(task.build_model(config),
                                                       task.input_spec(config)[0]),
          'peak_rss_mb': peak_rss_mb()['self']}


def engine_points(cohorts: Sequence[int], *, rounds: int, warmup: int,
                  flops_per_s: float, bytes_per_s: float, models: Sequence[str] = tuple(ENGINE_MODELS),
                  progress: Callable[[str], None] = print) -> list[dict]:
  """Per model: `gaussian_fixed` on `vectorized` at each cohort size, every other
  mechanism and `ENGINE_OPTIONS` at 1,000 clients, and `mapreduce` at the smallest
  cohort (its cost per client does not fall with the cohort), for `gaussian_fixed` and
  for those whose client-side steps run as TFF's graph; with the arithmetic bound
  (training FLOPs over this machine's matmul throughput) and each round's ratio to it,
  and the weight-traffic bound (`STEP_BYTES_PER_PARAMETER` per parameter and client
  step over the measured memory bandwidth), which bounds small batches of big models."""
  from fl_analytics.privacy import mechanisms  # pylint: disable=g-import-not-at-top

  plan = []
  for model in models:
    if model == MEMORY_MODEL:  # its memory at the smallest and the largest cohort
      plan += [(model, c, 'gaussian_fixed', 'vectorized') for c in (min(cohorts),
                                                                    max(cohorts))]
      continue
    plan += [(model, c, 'gaussian_fixed', 'vectorized') for c in cohorts]
    plan += [(model, 1000, m, 'vectorized') for m in (*mechanisms.REGISTRY, *GRAPH_PATH[1:])
             if m != 'gaussian_fixed']
    plan += [(model, min(cohorts), m, 'mapreduce') for m in ('gaussian_fixed', *GRAPH_PATH)]
  rows = []
  for k, (model, cohort, mechanism, engine) in enumerate(plan):
    progress(f'[{k + 1}/{len(plan)}] {model}, {cohort} clients per round, {mechanism}, '
             f'{engine} ...')
    row = run_in_child('engine_point', model, cohort, mechanism=mechanism, engine=engine,
                       rounds=rounds, warmup=warmup)
    row['arithmetic_bound_s'] = (row['train_flops_per_example'] * row['examples_per_round']
                                 / flops_per_s)
    row['times_arithmetic_bound'] = row['round_s'] / row['arithmetic_bound_s']
    row['traffic_bound_s'] = (STEP_BYTES_PER_PARAMETER * row['parameters']
                              * row['client_steps_per_round'] / bytes_per_s)
    row['times_traffic_bound'] = row['round_s'] / row['traffic_bound_s']
    progress(engine_table([row]).splitlines()[-1])
    rows.append(row)
  fixed = {(r['model'], r['clients_per_round']): r['round_s'] for r in rows
           if r['mechanism'] == 'gaussian_fixed' and r['engine'] == 'vectorized'}
  for r in rows:
    if r['engine'] == 'vectorized' and (r['model'], r['clients_per_round']) in fixed:
      r['over_gaussian_fixed'] = r['round_s'] / fixed[(r['model'], r['clients_per_round'])]
  return rows


def engine_table(rows: Sequence[dict]) -> str:
  lines = [f'{"model":<17} {"params":>8} {"clients":>7} {"mechanism":<26} {"engine":<10} '
           f'{"round s":>8} {"ms/client":>9} {"FLOP s":>8} {"x FLOP":>7} {"bytes s":>8} '
           f'{"x bytes":>7} {"x fixed":>7} {"peak MiB":>8}']
  for r in rows:
    fixed = r.get('over_gaussian_fixed')
    lines.append(f'{r["model"]:<17} {r["parameters"]:>8} {r["clients_per_round"]:>7} '
                 f'{r["mechanism"]:<26} {r["engine"]:<10} {r["round_s"]:>8.3f} '
                 f'{r["ms_per_client"]:>9.3f} {r["arithmetic_bound_s"]:>8.4f} '
                 f'{r["times_arithmetic_bound"]:>7.1f} {r["traffic_bound_s"]:>8.4f} '
                 f'{r["times_traffic_bound"]:>7.1f} '
                 + (f'{fixed:>7.2f}' if fixed is not None else f'{"":>7}')
                 + f' {r["peak_rss_mb"]:>8.0f}')
  return '\n'.join(lines)


def conv1d_forms(clients: int = 50, batch: int = 16, length: int = 8, channels: int = 16,
                 filters: int = 32, kernel_size: int = 3, repeats: int = 20) -> dict:
  """Milliseconds of one training step (forward and gradient) of a causal Conv1D with a
  kernel per client under `tf.vectorized_map`: as pfor rewrites `tf.nn.conv1d`, and in
  the im2col form `fl_analytics.engines.stacked` gives Conv1D layers (the conv
  next-action model's shapes)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from fl_analytics.engines import stacked  # pylint: disable=g-import-not-at-top

  x = tf.random.stateless_normal([clients, batch, length, channels], seed=[0, 1])
  kernels = tf.random.stateless_normal([clients, kernel_size, channels, filters],
                                       seed=[0, 2])

  def convolution(a):
    return tf.nn.conv1d(tf.pad(a[0], [[0, 0], [kernel_size - 1, 0], [0, 0]]), a[1], 1,
                        'VALID')

  def im2col(a):  # the engine's own form
    return stacked.im2col_conv1d(tf.pad(a[0], [[0, 0], [kernel_size - 1, 0], [0, 0]]), a[1])

  result = {'clients': clients, 'batch': batch}
  for name, fn in (('conv1d_ms', convolution), ('im2col_ms', im2col)):
    @tf.function
    def step(x, kernels, fn=fn):
      with tf.GradientTape() as tape:
        tape.watch(kernels)
        loss = tf.reduce_sum(tf.square(tf.vectorized_map(fn, (x, kernels))))
      return tape.gradient(loss, kernels)

    step(x, kernels)  # trace
    best = math.inf
    for _ in range(repeats):
      t0 = time.perf_counter()
      step(x, kernels).numpy()
      best = min(best, time.perf_counter() - t0)
    result[name] = 1e3 * best
  result['im2col_speedup'] = result['conv1d_ms'] / result['im2col_ms']
  return result
