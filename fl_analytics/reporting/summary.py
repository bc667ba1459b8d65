"""Reading a sweep's results back: its runs, one summary row per setting, the table.

Reads only run directories (`config.json`, `privacy.json`, `metrics.csv`, and
`audit.json` when the run had audit canaries); each run's
task, recorded in its config, says which metrics lead (`tasks.for_run`). This module
imports neither TensorFlow nor TFF.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Optional, Sequence

import numpy as np

from fl_analytics.privacy import mechanisms
from fl_analytics.reporting import report
from fl_analytics.core import rundir
from fl_analytics import tasks

SUMMARY_FILE = 'summary.csv'
# Keys that differ between runs of one setting without making it another setting.
_NOT_A_SETTING = ('seed', 'resolved', 'runtime', 'num_rounds', 'eval_every')


@dataclasses.dataclass
class Run:
  name: str
  config: dict
  privacy: dict
  rows: list[dict[str, str]]
  audit: Optional[dict] = None  # audit.json (runs with audit canaries)
  evaluation: Optional[dict] = None  # evaluation.json (finished runs)

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
    if (self.config['dp'].get('target_epsilon') is not None
        or not mechanisms.get(self.mechanism).private):
      drop.add('dp.noise_multiplier')  # calibrated per seed's population
    if not mechanisms.get(self.mechanism).private:
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
      optional = [os.path.join(d, f) for f in (rundir.AUDIT_FILE, rundir.EVALUATION_FILE)]
      runs.append(Run(name, rundir.read_json(files[0]), rundir.read_json(files[1]),
                      rundir.read_csv(files[2]),
                      *(rundir.read_json(f) if os.path.exists(f) else None
                        for f in optional)))
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
    # The audit (runs with canaries): the final-model estimate, its lower bound, the
    # all-iterates estimate, how many seeds the audit flagged, the membership attack.
    'audit_estimate_mean', 'audit_estimate_std', 'audit_lower_bound_max',
    'audit_all_iterates_estimate_mean', 'audit_flagged', 'membership_auc_mean',
    # Next action's per-user bigram baseline (evaluation.json), top-1.
    'eval_bigram_accuracy_mean',
)
# Final metrics of a run: churn reports AUC and base rate, next action top-3 accuracy.
FINAL_METRICS = ('epsilon', 'eval_auc', 'eval_accuracy', 'eval_loss', 'eval_base_rate',
                 'eval_top3_accuracy', 'eval_majority_accuracy')


def task_of(rows: Sequence[dict[str, Any]]) -> tasks.Task:
  """The task of summary rows (their `task`, from the runs' config.json); one per sweep."""
  names = {r.get('task', tasks.DEFAULT) for r in rows}
  if len(names) > 1:
    raise ValueError(f'The runs mix tasks ({", ".join(sorted(names))}); summarize and '
                     'plot each task on its own.')
  return tasks.get(names.pop() if names else tasks.DEFAULT)


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
    row.update(_audit_columns(group))
    bigram = [r.evaluation['per_user_bigram']['accuracy'] for r in group
              if r.evaluation and 'per_user_bigram' in r.evaluation]
    row['eval_bigram_accuracy_mean'] = float(np.mean(bigram)) if bigram else None
    rows.append(row)
  rows.sort(key=lambda r: (mechanisms.get(r['mechanism']).private, r['mechanism'],
                           r['compression_bits'],
                           r['epsilon_mean']))
  return rows


def audit_value(value: Optional[float]) -> float:
  """An epsilon of audit.json (None: infinite) as a float."""
  return math.inf if value is None else float(value)


def _audit_columns(group: Sequence[Run]) -> dict[str, Any]:
  audits = [r.audit for r in group if r.audit is not None]
  if not audits:
    return {}
  final = [audit_value(a['final_model']['epsilon_estimate']) for a in audits]
  mean, std = _mean_std(final)
  return {
      'audit_estimate_mean': mean, 'audit_estimate_std': std,
      'audit_lower_bound_max': max(
          audit_value(a['final_model']['epsilon_lower_bound']) for a in audits),
      'audit_all_iterates_estimate_mean': _mean_std(
          [audit_value(a['all_iterates']['epsilon_estimate']) for a in audits])[0],
      'audit_flagged': sum(bool(a['flagged_by']) for a in audits),
      'membership_auc_mean': float(np.mean(
          [a['membership_inference']['auc'] for a in audits])),
  }


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
  audited = any(r.get('audit_estimate_mean') is not None for r in rows)
  header = ('setting', 'seeds', 'epsilon', task.headline.label, task.accuracy.label) + (
      ('estimated epsilon', 'lower bound', 'flagged') if audited else ())
  table = [header] + [
      (r['setting'], str(r['num_seeds']), pm(r['epsilon_mean'], None, '.3g'),
       pm(r[f'{metric}_mean'], r[f'{metric}_std'], '.3f'),
       pm(r['eval_accuracy_mean'], r['eval_accuracy_std'], '.3f'))
      + ((pm(r.get('audit_estimate_mean'), r.get('audit_estimate_std'), '.3g'),
          pm(r.get('audit_lower_bound_max'), None, '.3g'),
          str(r.get('audit_flagged', ''))) if audited else ())
      for r in rows]
  widths = [max(len(row[i]) for row in table) for i in range(len(header))]
  return '\n'.join('  '.join(c.ljust(w) for c, w in zip(row, widths)) for row in table)


EQUAL_UTILITY_FILE = 'equal_utility.csv'


def epsilon_for_utility(points: Sequence[tuple[float, float]],
                        utility: float) -> tuple[Optional[float], str]:
  """The epsilon at which a mechanism's frontier (epsilon, utility) points reach
  `utility`, and how it bounds the one needed: linear interpolation in log epsilon
  between the first two consecutive budgets that bracket it ('='); the smallest budget
  when it already reaches it ('<=': less may do); (None, '>') when no budget does."""
  points = sorted((e, u) for e, u in points if math.isfinite(e) and math.isfinite(u))
  if not points or max(u for _, u in points) < utility:
    return None, '>'
  if points[0][1] >= utility:
    return points[0][0], '=' if points[0][1] == utility else '<='
  for (e0, u0), (e1, u1) in zip(points, points[1:]):
    if u0 < utility == u1:
      return e1, '='
    if u0 < utility < u1:
      share = (utility - u0) / (u1 - u0)
      return float(math.exp(math.log(e0) + share * (math.log(e1) - math.log(e0)))), '='
  return None, '>'


def equal_utility(rows: Sequence[dict[str, Any]], reference: str) -> list[dict[str, Any]]:
  """At the utility `reference` reaches at each of its budgets (the headline metric's
  mean over seeds), the epsilon each private mechanism needs for it
  (`epsilon_for_utility`: `bound` says whether it is that epsilon, at most it, or more
  than any budget run), and its ratio to the reference's: one row per mechanism and
  reference budget."""
  metric = primary_metric(rows) + '_mean'
  curves: dict[str, list[tuple[float, float]]] = {}
  for r in rows:
    if mechanisms.get(r['mechanism']).private:
      curves.setdefault(r['mechanism'], []).append((r['epsilon_mean'], r[metric]))
  if reference not in curves:
    raise ValueError(f'The reference mechanism {reference!r} has no private runs in the '
                     f'sweep (it has {", ".join(curves) or "none"}).')
  out = []
  for ref_eps, utility in sorted(curves[reference]):
    for mechanism, points in curves.items():
      eps, bound = epsilon_for_utility(points, utility)
      out.append({'reference': reference, 'reference_epsilon': ref_eps,
                  'utility_column': metric, 'utility': utility, 'mechanism': mechanism,
                  'bound': bound, 'epsilon': eps,
                  'epsilon_ratio': None if eps is None else eps / ref_eps})
  return out


def write_equal_utility(workdir: str, reference: str) -> list[dict[str, Any]]:
  """`equal_utility` of the sweep's summary, written to equal_utility.csv."""
  rows = equal_utility(summarize(collect_runs(workdir)), reference)
  rundir.write_csv(os.path.join(workdir, EQUAL_UTILITY_FILE),
                   ('reference', 'reference_epsilon', 'utility_column', 'utility',
                    'mechanism', 'bound', 'epsilon', 'epsilon_ratio'), rows)
  return rows
