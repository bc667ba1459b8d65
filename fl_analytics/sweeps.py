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

The summary reads only the run directories. This module imports neither TensorFlow nor
TFF.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import math
import functools
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Optional, Sequence

import numpy as np

from fl_analytics import config_files
from fl_analytics import report
from fl_analytics import rundir
from fl_analytics import runtime
from fl_analytics import tasks

SUMMARY_FILE = 'summary.csv'
LOG_DIR = 'logs'
# Keys that differ between runs of one setting without making it another setting.
_NOT_A_SETTING = ('seed', 'resolved', 'runtime', 'num_rounds', 'eval_every')


# Kept as names of this module: sweep configs and older callers use them.
load_config_file = config_files.load


def apply_overrides(config, overrides: dict[str, Any], *, source: str = 'sweep'):
  """`config_files.apply_overrides`, with a sweep as the default source."""
  return config_files.apply_overrides(config, overrides, source=source)


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
  base = load_config_file(base_path)
  points, names = [], set()
  for setting in sweep.settings:
    setting = flat_overrides(setting)
    for seed in sweep.seeds:
      overrides = flat_overrides(sweep.base_overrides)
      overrides.update(setting)
      overrides['seed'] = seed
      config = apply_overrides(base, overrides, source=f'sweep over {base_path}')
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
  return f'eps {eps:.3g}  {shown}' if math.isfinite(eps) else f'non-private  {shown}'


# --- Reading results back --------------------------------------------------------------


@dataclasses.dataclass
class Run:
  name: str
  config: dict
  privacy: dict
  rows: list[dict[str, str]]

  @property
  def mechanism(self) -> str:
    return self.config['dp']['mechanism']

  @property
  def compression_bits(self) -> int:
    """`compression.bits` of the run (0: uncompressed; runs from before it: 0)."""
    return int(self.config.get('compression', {}).get('bits', 0))

  @property
  def setting_key(self) -> tuple:
    flat = rundir.flatten_dict(self.config)
    drop = set()
    if self.config['dp'].get('target_epsilon') is not None or self.mechanism == 'none':
      drop.add('dp.noise_multiplier')  # calibrated per seed's population
    if self.mechanism == 'none':
      drop.update(k for k in flat if k.startswith('dp.') and k != 'dp.mechanism')
    return tuple(sorted(
        (k, repr(v)) for k, v in flat.items()
        if k not in drop and not any(k == n or k.startswith(n + '.') for n in _NOT_A_SETTING)))

  def final(self) -> dict[str, float]:
    """The last evaluated row's metrics; NaN for those the task does not report."""
    ev = report.last_evaluated_row(self.rows)
    values = {k: rundir.to_float(ev.get(k, '')) for k in FINAL_METRICS}
    return {k: math.nan if v is None else v for k, v in values.items()}


def collect_runs(workdir: str) -> list[Run]:
  """Every finished-or-not run directory directly under `workdir`."""
  runs = []
  for name in sorted(os.listdir(workdir)):
    d = os.path.join(workdir, name)
    files = [os.path.join(d, f) for f in
             (rundir.CONFIG_FILE, rundir.PRIVACY_FILE, rundir.METRICS_FILE)]
    if all(os.path.exists(f) for f in files):
      runs.append(Run(name, rundir.read_json(files[0]), rundir.read_json(files[1]),
                      rundir.read_csv(files[2])))
  return runs


def group_by_setting(runs: Sequence[Run]) -> list[list[Run]]:
  groups: dict[tuple, list[Run]] = {}
  for run in runs:
    groups.setdefault(run.setting_key, []).append(run)
  return list(groups.values())


def setting_label(group: Sequence[Run]) -> str:
  """The run name without its seed part, e.g. `mechanism-none`."""
  name = group[0].name
  return name.rsplit('_seed-', 1)[0] if '_seed-' in name else name


SUMMARY_COLUMNS = (
    'setting', 'task', 'mechanism', 'target_epsilon', 'noise_multiplier', 'rounds', 'num_seeds',
    'epsilon_mean', 'epsilon_std', 'eval_auc_mean', 'eval_auc_std',
    'eval_accuracy_mean', 'eval_accuracy_std', 'eval_loss_mean', 'eval_loss_std',
    'eval_base_rate_mean', 'compression_bits', 'client_bytes_mean',
    'eval_top3_accuracy_mean', 'eval_top3_accuracy_std', 'eval_majority_accuracy_mean',
)
# Final metrics of a run: churn reports AUC and base rate, next action top-3 accuracy.
FINAL_METRICS = ('epsilon', 'eval_auc', 'eval_accuracy', 'eval_loss', 'eval_base_rate',
                 'eval_top3_accuracy', 'eval_majority_accuracy')


def task_of(rows: Sequence[dict[str, Any]]) -> tasks.Task:
  """The task of summary rows (their `task`, from the runs' config.json); one per sweep."""
  names = {r.get('task', 'churn') for r in rows}
  if len(names) > 1:
    raise ValueError(f'The runs mix tasks ({", ".join(sorted(names))}); summarize and '
                     'plot each task on its own.')
  return tasks.get(names.pop() if names else 'churn')


def primary_metric(rows: Sequence[dict[str, Any]]) -> str:
  """The headline metric column of summary rows, as their task defines it."""
  return task_of(rows).headline.column


def _mean_std(values: Sequence[float]) -> tuple[float, Optional[float]]:
  """Mean and sample std; std is None for one value or non-finite values."""
  a = np.asarray(values, np.float64)
  if not np.all(np.isfinite(a)):
    return (math.inf if np.all(np.isposinf(a)) else math.nan), None
  return float(a.mean()), (float(a.std(ddof=1)) if len(a) > 1 else None)


def summarize(runs: Sequence[Run]) -> list[dict[str, Any]]:
  """One row per setting: final metrics as mean and sample std over seeds."""
  rows = []
  for group in group_by_setting(runs):
    finals = [r.final() for r in group]
    first = group[0]
    row = {
        'setting': setting_label(group),
        'task': tasks.for_run(first.config).name,
        'mechanism': first.mechanism,
        'target_epsilon': first.config['dp'].get('target_epsilon'),
        'noise_multiplier': float(np.mean([r.privacy['noise_multiplier'] for r in group])),
        'rounds': first.privacy['rounds'],
        'num_seeds': len(group),
    }
    for metric in ('epsilon', 'eval_auc', 'eval_accuracy', 'eval_loss',
                   'eval_top3_accuracy'):
      row[f'{metric}_mean'], row[f'{metric}_std'] = _mean_std(
          [f[metric] for f in finals])
    row['eval_base_rate_mean'] = _mean_std([f['eval_base_rate'] for f in finals])[0]
    row['eval_majority_accuracy_mean'] = _mean_std(
        [f['eval_majority_accuracy'] for f in finals])[0]
    row['compression_bits'] = first.compression_bits
    # Bytes a client sent per round, over every round and seed (mapreduce engine).
    sent = [rundir.to_float(r.get('client_bytes', '')) for run in group for r in run.rows]
    sent = [b for b in sent if b is not None]
    row['client_bytes_mean'] = float(np.mean(sent)) if sent else None
    rows.append(row)
  rows.sort(key=lambda r: (r['mechanism'] != 'none', r['mechanism'], r['compression_bits'],
                           r['epsilon_mean']))
  return rows


def write_summary(workdir: str) -> list[dict[str, Any]]:
  rows = summarize(collect_runs(workdir))
  rundir.write_csv(os.path.join(workdir, SUMMARY_FILE), SUMMARY_COLUMNS, rows)
  return rows


def format_summary(rows: Sequence[dict[str, Any]]) -> str:
  """The summary as an aligned text table."""
  def pm(mean, std, fmt):
    if mean is None or math.isnan(mean):
      return 'nan'  # a run without this metric; never shown as inf
    s = format(mean, fmt) if math.isfinite(mean) else 'inf'
    return s + (f' ± {format(std, fmt)}' if std is not None and math.isfinite(std) else '')

  task = task_of(rows)
  metric = task.headline.column
  header = ('setting', 'seeds', 'epsilon', task.headline.label, task.accuracy.label)
  table = [header] + [
      (r['setting'], str(r['num_seeds']), pm(r['epsilon_mean'], None, '.3g'),
       pm(r[f'{metric}_mean'], r[f'{metric}_std'], '.3f'),
       pm(r['eval_accuracy_mean'], r['eval_accuracy_std'], '.3f')) for r in rows]
  widths = [max(len(row[i]) for row in table) for i in range(len(header))]
  return '\n'.join('  '.join(c.ljust(w) for c, w in zip(row, widths)) for row in table)


EXPORTED_RUN_FILES = (rundir.CONFIG_FILE, rundir.METRICS_FILE, rundir.PRIVACY_FILE)


def export_small_files(src: str, dst: str, *, extra_dirs: Sequence[str] = ()) -> None:
  """Copies what a committed reference keeps: summary, figures, per-run small files.

  The copy is assembled next to `dst` and renamed into place, so an interrupted export
  leaves the previous reference intact.
  """
  import shutil  # pylint: disable=g-import-not-at-top

  tmp = dst.rstrip('/') + '.tmp-export'
  if os.path.exists(tmp):
    shutil.rmtree(tmp)
  os.makedirs(tmp)
  shutil.copy2(os.path.join(src, SUMMARY_FILE), tmp)
  for d in extra_dirs:
    if os.path.isdir(os.path.join(src, d)):
      shutil.copytree(os.path.join(src, d), os.path.join(tmp, d))
  for run in collect_runs(src):
    os.makedirs(os.path.join(tmp, run.name))
    for name in EXPORTED_RUN_FILES:
      shutil.copy2(os.path.join(src, run.name, name), os.path.join(tmp, run.name, name))
  if os.path.exists(dst):
    old = dst.rstrip('/') + '.tmp-old'
    os.replace(dst, old)
    os.replace(tmp, dst)
    shutil.rmtree(old)
  else:
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    os.replace(tmp, dst)
