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

Reading the results back is `fl_analytics.summary`; copying the small files of a sweep
into a committed reference is `fl_analytics.reference`. This module imports neither
TensorFlow nor TFF.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import math
import os
import signal
import subprocess
import threading
import time
from typing import Any, Callable, Optional, Sequence


from fl_analytics import config_files
from fl_analytics import report
from fl_analytics import rundir
from fl_analytics import runtime
from fl_analytics import tasks

LOG_DIR = 'logs'


def _format_value(value) -> str:
  if isinstance(value, float):
    return f'{value:g}'
  return str(value)


def run_name(overrides: dict[str, Any]) -> str:
  """`dp.mechanism=none, seed=1` -> `mechanism-none_seed-1`."""
  parts = [f'{k.split(".")[-1]}-{_format_value(v)}' for k, v in overrides.items()]
  name = '_'.join(parts) or 'base'
  return ''.join(c if c.isalnum() or c in '-_.' else '-' for c in name)


@dataclasses.dataclass(frozen=True)
class Point:
  name: str
  overrides: dict[str, Any]  # everything on top of the base config
  num_rounds: int


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
) -> list[PointResult]:
  """Runs every unfinished point, holding `workdir`'s lock; one result per point."""
  parallel = parallel or default_parallel()
  if parallel < 1:
    raise ValueError(f'parallel must be >= 1. Found {parallel}.')
  with rundir.locked(workdir):
    return _run_points(points, workdir, command=command, parallel=parallel, log=log)


# Seconds interrupted points get to checkpoint and stop before they are killed.
_STOP_GRACE_S = 30.0


def _run_points(points, workdir, *, command, parallel, log) -> list[PointResult]:
  threads = str(max(1, (os.cpu_count() or 1) // parallel))
  os.makedirs(os.path.join(workdir, LOG_DIR), exist_ok=True)
  results: list[PointResult] = []
  todo = []
  for p in points:
    if is_complete(os.path.join(workdir, p.name), p.num_rounds):
      results.append(PointResult(p, 'skipped'))
    else:
      todo.append(p)
  log(f'Sweep of {len(points)} points: {len(results)} already finished, '
      f'{len(todo)} to run, {parallel} at a time, {threads} TF thread(s) each.')
  lock = threading.Lock()
  procs: set[subprocess.Popen] = set()
  stopping = threading.Event()

  def run_one(p: Point) -> PointResult:
    run_dir = os.path.join(workdir, p.name)
    log_path = os.path.join(workdir, LOG_DIR, p.name + '.log')
    env = dict(os.environ, TF_NUM_INTRAOP_THREADS=threads,
               TF_NUM_INTEROP_THREADS=threads, OMP_NUM_THREADS=threads)
    env.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
    t0 = time.monotonic()
    with open(log_path, 'ab') as out, lock:  # not started once the sweep stops
      if stopping.is_set():
        return PointResult(p, 'failed', message='not started: sweep interrupted')
      # Its own process group (the point and its TFF worker are signalled together),
      # and SIGTERM from the kernel if this thread, which waits for it, goes away.
      proc = subprocess.Popen(command(p, run_dir), stdout=out, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, env=env, start_new_session=True,
                              preexec_fn=functools.partial(runtime.die_with_parent,
                                                           signal.SIGTERM))
      procs.add(proc)
    code = proc.wait()
    with lock:
      procs.discard(proc)
    seconds = time.monotonic() - t0
    if code != 0:
      return PointResult(p, 'failed', seconds,
                         f'exit code {code}; last lines of {log_path}:\n'
                         + _tail(log_path, 5))
    return PointResult(p, 'done', seconds)

  with concurrent.futures.ThreadPoolExecutor(max_workers=parallel) as pool:
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
        running = list(procs)
      _stop(running)
      raise
  order = {p.name: i for i, p in enumerate(points)}
  return sorted(results, key=lambda r: order[r.point.name])


def _stop(procs: Sequence[subprocess.Popen]) -> None:
  """SIGINT to each point's process group (each run checkpoints and stops its worker),
  SIGKILL to those still there after `_STOP_GRACE_S`."""
  for proc in procs:
    _signal_group(proc, signal.SIGINT)
  deadline = time.monotonic() + _STOP_GRACE_S
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


def _tail(path: str, lines: int = 15) -> str:
  with open(path, errors='replace') as f:
    return ''.join(f.readlines()[-lines:])


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
