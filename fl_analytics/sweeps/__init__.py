"""Sweeps: lists of overrides of one base config, run as ordinary training runs.

A sweep config (`configs/sweeps/*.py`) names a base config, overrides applied to every
point (`base_overrides`), a list of `settings` (each a dict of overrides, e.g. one
privacy budget of one mechanism) and `seeds`. Every (setting, seed) pair is a point; its
run directory is `DIR/<run name>/`, the name derived from its overrides, and it is run
by the command `train.py` runs (the caller passes the command), so a sweep point *is* a
`train.py` run: same outputs, same resume.

Points run in parallel subprocesses. Each gets `cores // parallel` TensorFlow threads
through `TF_NUM_INTRAOP_THREADS` / `TF_NUM_INTEROP_THREADS`, which both the Python
process and TFF's C++ worker read, so parallel points do not over-subscribe the cores.
Finished points are skipped (finished as `rundir.incomplete_reasons` defines it, the
definition `train.py` uses), interrupted ones resume, a failed one is reported (its log
is in `DIR/logs/`) and does not stop the others. The sweep holds `DIR`'s lock while it
runs. Each point runs in its own process group and gets SIGTERM from the kernel if
the sweep dies (`PR_SET_PDEATHSIG`), so no point outlives its sweep, even after a
SIGKILL; on Ctrl-C or SIGTERM the sweep interrupts its points (they checkpoint and
stop their workers) and waits for them.

With `ray_address` (`experiments/sweep.py --ray_address`), the same commands run as
Ray tasks on a cluster instead (`fl_analytics.sweeps.ray_launcher`), under the same rules; the
two differ only in their launcher (`LocalLauncher`, `ray_launcher.RayLauncher`: start a
point, wait for it, stop the running ones).

Reading the results back is `fl_analytics.reporting.summary`; copying the small files of a sweep
into a committed reference is `fl_analytics.reporting.reference`. This module imports neither
TensorFlow nor TFF.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import math
import os
import threading
import time
from typing import Any, Callable, Optional, Sequence


from fl_analytics.core import config_files
from fl_analytics.reporting import report
from fl_analytics.core import rundir
from fl_analytics import tasks

from fl_analytics.sweeps.launchers import LOG_DIR
from fl_analytics.sweeps.launchers import LocalLauncher
from fl_analytics.sweeps.launchers import Point


def _format_value(value) -> str:
  if isinstance(value, float):
    return f'{value:g}'
  return str(value)


def run_name(overrides: dict[str, Any]) -> str:
  """`dp.mechanism=none, seed=1` -> `mechanism-none_seed-1`."""
  parts = [f'{k.split(".")[-1]}-{_format_value(v)}' for k, v in overrides.items()]
  name = '_'.join(parts) or 'base'
  return ''.join(c if c.isalnum() or c in '-_.' else '-' for c in name)


def flat_overrides(overrides) -> dict[str, Any]:
  """Overrides as dotted keys; nested dicts (as ConfigDict stores them) are flattened.

  `base_overrides` is a ConfigDict field, which does not accept dotted keys, so it
  is written nested (`{'data': {'num_users': 150}}`); settings, in a list, may use
  either form.
  """
  if hasattr(overrides, 'to_dict'):
    overrides = overrides.to_dict()
  return rundir.flatten_dict(dict(overrides))


def expand(sweep, *, repo_root: str = '.') -> list[Point]:
  """The points of a sweep config, validated against its base config."""
  base_path = os.path.join(repo_root, sweep.base_config)
  base = config_files.load(base_path)
  points, names = [], set()
  for setting in sweep.settings:
    setting = flat_overrides(setting)
    for seed in sweep.seeds:
      overrides = flat_overrides(sweep.base_overrides)
      overrides.update(setting)
      overrides['seed'] = seed
      config = config_files.apply_overrides(base, overrides,
                                            source=f'sweep over {base_path}')
      name = run_name({**setting, 'seed': seed})
      if name in names:
        raise ValueError(f'Two sweep points are both named {name!r}.')
      names.add(name)
      points.append(Point(name, overrides, config.num_rounds))
  return points


def is_complete(run_dir: str, num_rounds: int) -> bool:
  return not rundir.incomplete_reasons(run_dir, num_rounds)


def default_parallel() -> int:
  return max(1, os.cpu_count() or 1)


@dataclasses.dataclass
class PointResult:
  point: Point
  status: str  # 'skipped' | 'done' | 'failed'
  seconds: float = 0.0
  message: str = ''


def run_sweep(
    points: Sequence[Point],
    workdir: str,
    *,
    command: Callable[[Point, str], list[str]],
    parallel: Optional[int] = None,
    log: Callable[[str], None] = print,
    ray_address: Optional[str] = None,
    cpus_per_point: int = 1,
    ray_transfer: str = 'auto',
) -> list[PointResult]:
  """Runs every unfinished point, holding `workdir`'s lock; one result per point.

  `ray_address` ('auto' or HOST:PORT): each point runs as a task on that Ray cluster
  with `cpus_per_point` CPUs, its run directory on a shared path or shipped back
  (`ray_transfer`, see `fl_analytics.sweeps.ray_launcher`); `parallel` then caps the points in
  flight (default: all, queued by Ray). Without it no Ray process starts.
  """
  if parallel is not None and parallel < 1:
    raise ValueError(f'parallel must be >= 1. Found {parallel}.')
  if cpus_per_point < 1:
    raise ValueError(f'cpus_per_point must be >= 1. Found {cpus_per_point}.')
  if ray_address:  # before the sweep directory is made
    from fl_analytics.cluster import ray_cluster  # pylint: disable=g-import-not-at-top
    ray_cluster.check_reachable(ray_address)
  with rundir.locked(workdir):
    if ray_address:
      from fl_analytics.sweeps import ray_launcher  # pylint: disable=g-import-not-at-top

      launcher = ray_launcher.RayLauncher(ray_address, workdir, cpus_per_point=cpus_per_point,
                                       parallel=parallel, transfer=ray_transfer)
    else:
      launcher = LocalLauncher(parallel or default_parallel())
    with launcher:
      return _run_points(points, workdir, command=command, launcher=launcher, log=log)


def _run_points(points, workdir, *, command, launcher, log) -> list[PointResult]:
  os.makedirs(os.path.join(workdir, LOG_DIR), exist_ok=True)
  results: list[PointResult] = []
  todo = []
  for p in points:
    if is_complete(os.path.join(workdir, p.name), p.num_rounds):
      results.append(PointResult(p, 'skipped'))
    else:
      todo.append(p)
  log(f'Sweep of {len(points)} points: {len(results)} already finished, '
      f'{len(todo)} to run, {launcher.describe()}.')
  lock = threading.Lock()
  running: set = set()
  stopping = threading.Event()

  def run_one(p: Point) -> PointResult:
    run_dir = os.path.join(workdir, p.name)
    log_path = os.path.join(workdir, LOG_DIR, p.name + '.log')
    t0 = time.monotonic()
    with lock:  # not started once the sweep stops
      if stopping.is_set():
        return PointResult(p, 'failed', message='not started: sweep interrupted')
      handle = launcher.start(p, run_dir, log_path, command)
      running.add(handle)
    try:
      code, detail = launcher.wait(handle)
    finally:
      with lock:
        running.discard(handle)
    seconds = time.monotonic() - t0
    if code != 0:
      return PointResult(p, 'failed', seconds,
                         f'exit code {code}{detail}; last lines of {log_path}:\n'
                         + _tail(log_path, 5))
    return PointResult(p, 'done', seconds)

  with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, launcher.parallel)) as pool:
    futures = {pool.submit(run_one, p): p for p in todo}
    try:
      for n, future in enumerate(concurrent.futures.as_completed(futures), 1):
        r = future.result()
        results.append(r)
        if r.status == 'failed':
          detail = '\n    ' + r.message.rstrip().replace('\n', '\n    ')
        else:
          detail = _brief(os.path.join(workdir, r.point.name))
        log(f'[{n}/{len(todo)}] {r.status:<6} {r.point.name} ({r.seconds:.0f} s) {detail}')
    except (KeyboardInterrupt, SystemExit):  # Ctrl-C, or SIGTERM (SystemExit)
      stopping.set()
      with lock:
        handles = list(running)
      launcher.stop(handles)
      raise
  order = {p.name: i for i, p in enumerate(points)}
  return sorted(results, key=lambda r: order[r.point.name])


def _tail(path: str, lines: int = 15) -> str:
  try:
    with open(path, errors='replace') as f:
      return ''.join(f.readlines()[-lines:])
  except OSError as e:
    return f'(no log: {e})'



def _brief(run_dir: str) -> str:
  try:
    rows = rundir.read_csv(os.path.join(run_dir, rundir.METRICS_FILE))
  except OSError:
    return ''
  ev = report.last_evaluated_row(rows)
  if not ev:
    return ''
  eps = float(ev['epsilon'])
  headline = tasks.for_run(rundir.read_json(os.path.join(run_dir, rundir.CONFIG_FILE))
                           ).headline
  shown = f'{headline.label} {float(ev[headline.column]):.3f}'
  audit_path = os.path.join(run_dir, rundir.AUDIT_FILE)
  if os.path.exists(audit_path):  # the canaries' estimate beside the claim
    final = rundir.read_json(audit_path)['final_model']
    shown += '  estimated eps ' + ('inf' if final['epsilon_estimate'] is None
                                   else f"{final['epsilon_estimate']:.3g}")
  return f'eps {eps:.3g}  {shown}' if math.isfinite(eps) else f'non-private  {shown}'
