r"""How fast the pipeline's rounds are, against the plain-TensorFlow floor of the same work.

  .venv/bin/python experiments/benchmark.py [--json=FILE] [--cohorts=10,50,200]
      [--rounds=10] [--sweep_points=2] [--memory_rounds=N] [--engine=mapreduce|cpp]
  .venv/bin/python experiments/benchmark.py --scale [--json=results/benchmark/scale.json]
      [--populations=10000,100000,1000000] [--scale_cohorts=100,1000,5000]
  .venv/bin/python experiments/benchmark.py --ray [--json=results/benchmark/ray.json]
      [--ray_cohorts=1000,5000] [--sweep_points=4]
  .venv/bin/python experiments/benchmark.py --generators
      [--json=results/benchmark/generators.json]
  .venv/bin/python experiments/benchmark.py --secagg [--json=results/benchmark/secagg.json]

With --secagg (`make bench-secagg`; benchmarks/secagg.py): one round of the SecAgg+
protocol per model (the churn MLP, the next-action conv model) and cohort (100, 1,000,
5,000), and at 1,000 clients with 5% of the devices dropping after their shares: each
device's bytes sent and received (and the wire format's prediction), its CPU, the
server's CPU, the simulation's wall time and the simulated sum's time, and the CPU
against the operation counts times this machine's unit costs; then the round of churn
at 1,000 clients on the `vectorized` engine, `gaussian_fixed` over the simulated secure
sum and over the protocol.

With --generators (`make bench-generators`): per behaviour model (`data.generator`), the
milliseconds per user to generate a log (1,000 users at a time, and one at a time) and
to featurize it for churn, and the ratio to the budget of `GENERATOR_BUDGET_MS`.

With --ray (`make bench-ray`): a two-node Ray cluster started on this machine (one CPU
a node, as the tests' cluster): its start-up, a driver's connection and a task's round
trip; a sweep's throughput as local subprocesses (two at a time) and as Ray tasks; and
per engine and cohort size at 100,000 users the round time and the time to the first
round with two client groups in one process and on two Ray actors (same groups, so
the same results).

With --scale (`make bench-scale`): one fresh process per point, at 1,000 clients per
round for each population size on the `mapreduce` and `vectorized` engines (time from
launch to the first round, median round time, peak resident memory, users made), then
per cohort size at 100,000 users the round's milliseconds per client on both engines
against the plain-TensorFlow floor on the same clients (each in a fresh process too),
and the round's arithmetic over this machine's measured matmul throughput; then per
model (the churn MLP, the larger churn model, the conv and GRU next-action models;
`suite.ENGINE_MODELS`), cohort (100, 1,000, 5,000) and mechanism on the `vectorized`
engine (and `mapreduce` at 100 clients): round time, the round's training FLOPs over
the matmul throughput (the arithmetic bound), the ratio to it and to
`gaussian_fixed`'s round; then a 10^7-event file ingested and trained from.
`--scale_sections` picks tables.

Prints, per clients_per_round, the pipeline's median seconds per round after warm-up
(`round_seconds` of `train.py`'s own loop, churn config with adaptive-clipping DP), the
floor's (`fl_analytics.engines.floor`), their ratio and the floor's trace count; the throughput
of a parallel sweep; peak resident memory; with --memory_rounds, resident memory after
round 50 and after round N of one long run. See `fl_analytics/suite.py`.
"""

import os
import sys

from absl import app
from absl import flags
from absl import logging
# Imported before absl's app.run: Keras 2.14 imported for the first time inside it
# makes `tf.keras.Input` a graph tensor, and the floor's model then fails to build
# ("'SymbolicTensor' object has no attribute 'node'").
import tensorflow as tf  # pylint: disable=unused-import

from fl_analytics.core import cli
from benchmarks import secagg as secagg_bench
from benchmarks import suite
from fl_analytics.core import rundir
from fl_analytics.data import generators

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_JSON = flags.DEFINE_string('json', None, 'Also write the results to this JSON file.')
_COHORTS = flags.DEFINE_list('cohorts', ['10', '50', '200'], 'clients_per_round values.')
_ROUNDS = flags.DEFINE_integer('rounds', 10, 'Timed rounds per cohort size.')
_SWEEP_POINTS = flags.DEFINE_integer('sweep_points', 2, 'Sweep points (0: skip).')
_SWEEP_ROUNDS = flags.DEFINE_integer('sweep_rounds', 20, 'Rounds per sweep point.')
_MEMORY_ROUNDS = flags.DEFINE_integer(
    'memory_rounds', 0, 'If > 50: one run this long, resident memory at 50 and at the end.')
_SCALE = flags.DEFINE_bool('scale', False, 'Population and cohort scale instead.')
_RAY = flags.DEFINE_bool('ray', False, 'Ray overheads, sweeps and rounds on a local '
                         'two-node cluster instead.')
_RAY_COHORTS = flags.DEFINE_list('ray_cohorts', ['1000', '5000'],
                                 '--ray: clients per round, at 100,000 users.')
_POPULATIONS = flags.DEFINE_list('populations', [str(p) for p in suite.SCALE_POPULATIONS],
                                 '--scale: synthetic users, at 1,000 clients per round.')
_SCALE_COHORTS = flags.DEFINE_list('scale_cohorts', [str(c) for c in suite.SCALE_COHORTS],
                                   '--scale: clients per round, at 100,000 users.')
SCALE_SECTIONS = ('populations', 'engines', 'layers', 'event_file')
_SCALE_SECTIONS = flags.DEFINE_list(
    'scale_sections', list(SCALE_SECTIONS),
    '--scale: which tables to measure (populations also gives the cohorts table).')
_SECAGG = flags.DEFINE_bool('secagg', False, 'SecAgg+ costs instead (benchmarks/secagg.py).')
_ENGINE_ROUNDS = flags.DEFINE_integer('engine_rounds', 3,
                                      '--scale: timed rounds per engine point.')
_EVENTS = flags.DEFINE_integer('events', 10_000_000,
                                '--scale: rows of the event file ingested (0: skip).')
_GENERATORS = flags.DEFINE_bool('generators', False,
                                'The behaviour models\' cost per user instead.')
# A user's log, made 1,000 at a time, should cost at most this (issue 26): a round of
# 1,000 clients then spends at most 0.2 s making its cohort.
GENERATOR_BUDGET_MS = 0.2
_ENGINE = flags.DEFINE_enum('engine', 'mapreduce', ['mapreduce', 'cpp'],
                            'runtime.engine of the pipeline runs.')


def main(argv):
  del argv  # cli.parse_flags refuses positional arguments
  logging.set_verbosity(logging.WARNING)
  if _SCALE.value:
    return _scale()
  if _RAY.value:
    return _ray()
  if _GENERATORS.value:
    return _generators()
  if _SECAGG.value:
    return _secagg()
  cohorts = _integers('cohorts', _COHORTS.value)
  result = {'engine': _ENGINE.value, 'rows': []}
  for cohort in cohorts:
    print(f'clients_per_round={cohort}: pipeline ...', flush=True)
    pipeline = suite.pipeline_round_seconds(cohort, rounds=_ROUNDS.value,
                                                engine=_ENGINE.value)
    print(f'clients_per_round={cohort}: floor ...', flush=True)
    floor_s, traces = suite.floor_round_seconds(cohort, rounds=_ROUNDS.value)
    result['rows'].append({'clients_per_round': cohort, 'pipeline_round_s': pipeline,
                           'floor_round_s': floor_s, 'ratio': pipeline / floor_s,
                           'floor_trace_count': traces})
  print()
  print(suite.rows_table(result['rows']))
  print('floor trace counts: ' + ', '.join(
      str(r['floor_trace_count']) for r in result['rows']))
  if _SWEEP_POINTS.value > 0:
    print(f'\nsweep: {_SWEEP_POINTS.value} points x {_SWEEP_ROUNDS.value} rounds ...',
          flush=True)
    sweep = suite.sweep_throughput(
        points=_SWEEP_POINTS.value, rounds=_SWEEP_ROUNDS.value, parallel=None,
        train_script=os.path.join(REPO, 'experiments', 'train.py'))
    result['sweep'] = sweep
    print(f'sweep: {sweep["rounds_per_second"]:.2f} rounds/s across {sweep["points"]} '
          f'points ({sweep["parallel"]} in parallel, {sweep["wall_seconds"]:.0f} s wall '
          f'with start-up; median round {sweep["median_round_seconds_in_sweep"]:.3f} s)')
  if _MEMORY_ROUNDS.value:
    try:
      result['memory'] = suite.memory_profile(_MEMORY_ROUNDS.value)
    except ValueError as e:
      print(f'error: {e}', file=sys.stderr)
      raise SystemExit(2) from None
    m = result['memory']
    last = m[f'rss_mb_round_{m["rounds"]}']
    print(f'memory: {m["rss_mb_round_50"]:.0f} MiB after round 50, {last:.0f} MiB after '
          f'round {m["rounds"]} ({100 * m["growth"]:+.1f}%)')
  result['peak_rss_mb'] = suite.peak_rss_mb()
  print(f'peak resident memory: {result["peak_rss_mb"]["self"]:.0f} MiB (this process), '
        f'{result["peak_rss_mb"]["children"]:.0f} MiB (largest sweep point)')
  _write(result)


def _integers(name, values):
  try:
    return [int(v) for v in values]
  except ValueError:
    raise app.UsageError(f'--{name} must be integers. Found {values}.') from None


def _event_file(num_events: int, *, rounds: int, warmup: int) -> dict:
  """--scale: a synthetic event file of `num_events` rows, ingested into its store in a
  fresh process, then a run from it at 1,000 clients per round."""
  import tempfile  # pylint: disable=g-import-not-at-top

  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, 'events.csv')
    print(f'writing an event file of {num_events:,} rows ...', flush=True)
    written = suite.write_event_file(path, num_events)
    print(f'ingesting {path} ...', flush=True)
    ingest = suite.run_in_child('ingest_point', path)
    print(f'{ingest["events"]:,} events of {ingest["users"]:,} users '
          f'({ingest["file_mb"]:.0f} MiB): store built in {ingest["ingest_s"]:.1f} s, '
          f'peak RSS {ingest["peak_rss_mb"]:.0f} MiB', flush=True)
    # 1,000 clients a round, or a quarter of a smaller file's users.
    cohort = min(1000, ingest['users'] // 4)
    print(f'training from the store, {cohort} clients per round ...', flush=True)
    run = suite.run_scale_point(1000, cohort, rounds=rounds, warmup=warmup,
                                    source=f'events:{path}')
    print(suite.scale_table([run]).splitlines()[-1], flush=True)
  return {**written, 'ingest': ingest, 'run': run}


def _write(result: dict) -> None:
  if _JSON.value:
    rundir.write_json(_JSON.value, result)
    print(f'Wrote {_JSON.value}')


def _generators():
  """--generators: each behaviour model's cost per user (module docstring)."""
  result = {'budget_ms_per_user': GENERATOR_BUDGET_MS, 'generators': []}
  for name in generators.REGISTRY:
    costs = suite.user_costs(generator=name)
    costs['budget_ratio'] = costs['generate_ms_per_user'] / GENERATOR_BUDGET_MS
    result['generators'].append(costs)
    print(suite.user_cost_line(costs) + f'; {costs["budget_ratio"]:.2f} of the '
          f'{GENERATOR_BUDGET_MS} ms budget', flush=True)
  _write(result)


def _secagg():
  """--secagg: the protocol's costs and a round over it (module docstring)."""
  points = [(n, p, 0.0) for p in secagg_bench.MODELS.values() for n in secagg_bench.COHORTS]
  points.append((1000, secagg_bench.MODELS['churn_mlp'], secagg_bench.DROPOUT))
  rows = []
  for k, (clients, parameters, dropout) in enumerate(points):
    print(f'[{k + 1}/{len(points)}] SecAgg+ round: {clients:,} clients, {parameters:,} '
          f'parameters, dropout {dropout:g} ...', flush=True)
    rows.append(secagg_bench.protocol_point(clients, parameters, dropout=dropout))
    print(secagg_bench.table(rows[-1:]).splitlines()[-1], flush=True)
  rounds = {}
  for how in ('secure_sum', 'secagg'):
    print(f'churn_mlp round at 1,000 clients, gaussian_fixed+{how}, vectorized ...',
          flush=True)
    rounds[how] = suite.run_in_child('engine_point', 'churn_mlp', 1000,
                                     mechanism=f'gaussian_fixed+{how}', engine='vectorized',
                                     rounds=_ENGINE_ROUNDS.value, warmup=1)
  result = {'rows': rows, 'round': secagg_bench.round_summary(
      rounds['secure_sum'], rounds['secagg'],
      next(r for r in rows if r['clients'] == 1000 and not r['dropped_after_shares']
           and r['parameters'] == secagg_bench.MODELS['churn_mlp']))}
  print()
  print(secagg_bench.table(rows))
  print(secagg_bench.round_line(result['round']))
  _write(result)


def _scale():
  """--scale: the population, cohort and engine tables (see the module docstring).

  With --scale_sections a subset runs; the other sections of an existing --json file
  are kept."""
  sections = set(_SCALE_SECTIONS.value)
  unknown = sections - set(SCALE_SECTIONS)
  if unknown:
    raise ValueError(f'--scale_sections must be among {",".join(SCALE_SECTIONS)}. '
                     f'Found {",".join(sorted(unknown))}.')
  rounds, warmup = _ROUNDS.value, 2
  result = {}
  if sections != set(SCALE_SECTIONS) and _JSON.value and os.path.exists(_JSON.value):
    result = rundir.read_json(_JSON.value)
  result.update({'rounds': rounds, 'warmup_rounds': warmup, 'delta': suite.SCALE_DELTA})
  flops_per_s = suite.matmul_flops_per_second()
  result['matmul_gflops_per_s'] = flops_per_s / 1e9
  bytes_per_s = suite.memory_bytes_per_second()
  result['memory_gb_per_s'] = bytes_per_s / 1e9
  if 'populations' in sections:
    result['users'] = suite.user_costs()
    print(suite.user_cost_line(result['users']), flush=True)
    result['populations'] = suite.scale_populations(
        _integers('populations', _POPULATIONS.value), rounds=rounds, warmup=warmup)
    result['cohorts'] = suite.scale_cohorts(
        _integers('scale_cohorts', _SCALE_COHORTS.value), result['populations'],
        rounds=rounds, warmup=warmup, flops_per_s=flops_per_s)
    print()
    print(suite.scale_report(result))
  if 'engines' in sections:  # with the throughputs its bounds use
    result['engines'] = {
        'rounds': _ENGINE_ROUNDS.value, 'warmup_rounds': 1, 'users': suite.ENGINE_USERS,
        'matmul_gflops_per_s': flops_per_s / 1e9, 'memory_gb_per_s': bytes_per_s / 1e9,
        'rows': suite.engine_points(
            _integers('scale_cohorts', _SCALE_COHORTS.value), rounds=_ENGINE_ROUNDS.value,
            warmup=1, flops_per_s=flops_per_s, bytes_per_s=bytes_per_s)}
    print()
    print(suite.engine_table(result['engines']['rows']))
  if 'layers' in sections:  # why stacked.py gives Conv1D its own form
    result['layers'] = suite.conv1d_forms()
    print(f'Conv1D step under pfor: {result["layers"]["conv1d_ms"]:.2f} ms as rewritten, '
          f'{result["layers"]["im2col_ms"]:.2f} ms as im2col', flush=True)
  if 'event_file' in sections and _EVENTS.value:
    result['event_file'] = _event_file(_EVENTS.value, rounds=rounds, warmup=warmup)
  _write(result)


def _ray():
  """--ray: Ray's overheads and speed-ups on this machine (see the module docstring)."""
  import time  # pylint: disable=g-import-not-at-top
  from fl_analytics.cluster import ray_cluster  # pylint: disable=g-import-not-at-top

  cohorts = _integers('ray_cohorts', _RAY_COHORTS.value)
  rounds, warmup = _ROUNDS.value, 2
  train = os.path.join(REPO, 'experiments', 'train.py')
  result = {'rounds': rounds, 'warmup_rounds': warmup, 'nodes': 2, 'cpus_per_node': 1}
  print(f'sweep of {_SWEEP_POINTS.value} points x {_SWEEP_ROUNDS.value} rounds, '
        'two at a time here ...', flush=True)
  local = suite.sweep_throughput(points=_SWEEP_POINTS.value, rounds=_SWEEP_ROUNDS.value,
                                     parallel=2, train_script=train)
  t0 = time.monotonic()
  with ray_cluster.local_cluster(nodes=2, cpus_per_node=1) as cluster:
    result['cluster_start_s'] = time.monotonic() - t0
    result.update(suite.ray_task_overhead(cluster.address))
    print(f'Ray: two nodes up in {result["cluster_start_s"]:.1f} s; a driver connects in '
          f'{result["connect_s"]:.2f} s; a task\'s round trip {result["task_round_trip_ms"]:.2f} '
          'ms', flush=True)
    print('the same sweep as Ray tasks ...', flush=True)
    on_ray = suite.sweep_throughput(
        points=_SWEEP_POINTS.value, rounds=_SWEEP_ROUNDS.value, parallel=None,
        train_script=train, ray_address=cluster.address)
    result['sweep'] = {'local': local, 'ray': on_ray,
                       'ray_over_local_wall': on_ray['wall_seconds'] / local['wall_seconds']}
    for name, s in (('here', local), ('on Ray', on_ray)):
      print(f'sweep {name}: {s["wall_seconds"]:.1f} s wall, {s["rounds_per_second"]:.2f} '
            f'rounds/s', flush=True)
    result['rounds'] = []
    for engine in ('vectorized', 'mapreduce'):
      for cohort in cohorts:
        row = {'engine': engine, 'clients_per_round': cohort}
        for where, address in (('one_process', None), ('ray_actors', cluster.address)):
          print(f'{engine}, 100000 users, {cohort} clients per round, 2 groups, '
                f'{where} ...', flush=True)
          row[where] = suite.run_scale_point(
              100_000, cohort, rounds=rounds, warmup=warmup, engine=engine,
              client_groups=2, ray_address=address)
        row['ray_over_one_process_round'] = (row['ray_actors']['round_s']
                                             / row['one_process']['round_s'])
        print(f'{engine} {cohort}: round {row["one_process"]["round_s"]:.3f} s in one '
              f'process, {row["ray_actors"]["round_s"]:.3f} s on actors (x'
              f'{row["ray_over_one_process_round"]:.2f}); first round after '
              f'{row["one_process"]["first_round_start_s"]:.1f} s and '
              f'{row["ray_actors"]["first_round_start_s"]:.1f} s', flush=True)
        result['rounds'].append(row)
  _write(result)


if __name__ == '__main__':
  cli.run(main)

