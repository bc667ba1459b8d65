r"""How fast the pipeline's rounds are, against the plain-TensorFlow floor of the same work.

  .venv/bin/python experiments/benchmark.py [--json=FILE] [--cohorts=10,50,200]
      [--rounds=10] [--sweep_points=2] [--memory_rounds=N] [--engine=mapreduce|cpp]

Prints, per clients_per_round, the pipeline's median seconds per round after warm-up
(`round_seconds` of `train.py`'s own loop, churn config with adaptive-clipping DP), the
floor's (`fl_analytics.floor`), their ratio and the floor's trace count; the throughput
of a parallel sweep; peak resident memory; with --memory_rounds, resident memory after
round 50 and after round N of one long run. See `fl_analytics/benchmark.py`.
"""

import os
import sys

from absl import app
from absl import flags
from absl import logging

from fl_analytics import cli
from fl_analytics import benchmark
from fl_analytics import rundir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_JSON = flags.DEFINE_string('json', None, 'Also write the results to this JSON file.')
_COHORTS = flags.DEFINE_list('cohorts', ['10', '50', '200'], 'clients_per_round values.')
_ROUNDS = flags.DEFINE_integer('rounds', 10, 'Timed rounds per cohort size.')
_SWEEP_POINTS = flags.DEFINE_integer('sweep_points', 2, 'Sweep points (0: skip).')
_SWEEP_ROUNDS = flags.DEFINE_integer('sweep_rounds', 20, 'Rounds per sweep point.')
_MEMORY_ROUNDS = flags.DEFINE_integer(
    'memory_rounds', 0, 'If > 50: one run this long, resident memory at 50 and at the end.')
_ENGINE = flags.DEFINE_enum('engine', 'mapreduce', ['mapreduce', 'cpp'],
                            'runtime.engine of the pipeline runs.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)
  try:
    cohorts = [int(c) for c in _COHORTS.value]
  except ValueError:
    raise app.UsageError(f'--cohorts must be integers. Found {_COHORTS.value}.') from None
  result = {'engine': _ENGINE.value, 'rows': []}
  for cohort in cohorts:
    print(f'clients_per_round={cohort}: pipeline ...', flush=True)
    pipeline = benchmark.pipeline_round_seconds(cohort, rounds=_ROUNDS.value,
                                                engine=_ENGINE.value)
    print(f'clients_per_round={cohort}: floor ...', flush=True)
    floor_s, traces = benchmark.floor_round_seconds(cohort, rounds=_ROUNDS.value)
    result['rows'].append({'clients_per_round': cohort, 'pipeline_round_s': pipeline,
                           'floor_round_s': floor_s, 'ratio': pipeline / floor_s,
                           'floor_trace_count': traces})
  print()
  print(benchmark.rows_table(result['rows']))
  print('floor trace counts: ' + ', '.join(
      str(r['floor_trace_count']) for r in result['rows']))
  if _SWEEP_POINTS.value > 0:
    print(f'\nsweep: {_SWEEP_POINTS.value} points x {_SWEEP_ROUNDS.value} rounds ...',
          flush=True)
    sweep = benchmark.sweep_throughput(
        points=_SWEEP_POINTS.value, rounds=_SWEEP_ROUNDS.value, parallel=None,
        train_script=os.path.join(REPO, 'experiments', 'train.py'))
    result['sweep'] = sweep
    print(f'sweep: {sweep["rounds_per_second"]:.2f} rounds/s across {sweep["points"]} '
          f'points ({sweep["parallel"]} in parallel, {sweep["wall_seconds"]:.0f} s wall '
          f'with start-up; median round {sweep["median_round_seconds_in_sweep"]:.3f} s)')
  if _MEMORY_ROUNDS.value:
    try:
      result['memory'] = benchmark.memory_profile(_MEMORY_ROUNDS.value)
    except ValueError as e:
      print(f'error: {e}', file=sys.stderr)
      raise SystemExit(2) from None
    m = result['memory']
    last = m[f'rss_mb_round_{m["rounds"]}']
    print(f'memory: {m["rss_mb_round_50"]:.0f} MiB after round 50, {last:.0f} MiB after '
          f'round {m["rounds"]} ({100 * m["growth"]:+.1f}%)')
  result['peak_rss_mb'] = benchmark.peak_rss_mb()
  print(f'peak resident memory: {result["peak_rss_mb"]["self"]:.0f} MiB (this process), '
        f'{result["peak_rss_mb"]["children"]:.0f} MiB (largest sweep point)')
  if _JSON.value:
    rundir.write_json(_JSON.value, result)
    print(f'Wrote {_JSON.value}')


if __name__ == '__main__':
  cli.run(main)
