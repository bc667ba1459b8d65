"""Figures of a sweep, drawn from its run directories only (matplotlib, no TF).

* `frontier`: the privacy-utility frontier: final held-out AUC and accuracy (next action:
  top-3 and top-1 accuracy) against the epsilon spent (log axis), one line per mechanism
  with error bars over seeds, the non-private reference as a band (mean ± one standard
  deviation over seeds).
* `auc_by_round` (next action: `top3_accuracy_by_round`), `epsilon_by_round`,
  `clip_by_round`: per setting, mean over seeds with a ± one standard deviation band.
* `communication` (sweeps with `compression.bits` > 0): held-out AUC (top-3 accuracy)
  against the bytes a client sent per round (log axis), one line per mechanism and
  budget through its bit widths.
* `population_frontier` (sweeps over `data.num_users`, in place of the others): held-out
  AUC (top-3 accuracy) against the epsilon spent, one line per population with its
  non-private reference dashed in the same colour, and beside it the gap to that
  reference: how big an app must be for a budget to be nearly free.
* `audit` (runs with audit canaries): the estimated epsilon (and its 90% interval and
  lower bound) against the claimed one, every run, with the diagonal; one panel for
  the final-model statistic and one for all iterates.
* `audit_power` (`make audit-power`): the canaries' lower bounds (final model, all
  iterates, first insertion) against the model's size, one panel per noise setting.
* `mechanism_audit` (`make audit-mechanisms`): per audited mechanism and sabotaged
  aggregator, each property's measured over claimed value (noise scale, clip, sampling,
  epsilon; the noise correlation as 1 + its gap to the claimed), failures in red; and
  the epsilon estimate with its interval and lower bound against the claim.
Compressed settings are lines of their own, labelled with their bit width.
"""

from __future__ import annotations

import io
import json
import math
import os
from typing import Optional, Sequence

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
from matplotlib import ticker  # pylint: disable=g-import-not-at-top
import ml_collections  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

from fl_analytics.privacy import mechanisms  # pylint: disable=g-import-not-at-top
from fl_analytics.core import rundir  # pylint: disable=g-import-not-at-top
from fl_analytics.privacy import sampling  # pylint: disable=g-import-not-at-top
from fl_analytics.reporting import summary as sweep_summary  # pylint: disable=g-import-not-at-top
from fl_analytics import tasks  # pylint: disable=g-import-not-at-top

FIGURE_DIR = rundir.FIGURE_DIR
FORMATS = ('png', 'pdf')
# Compressed variants of a mechanism: same colour, another line style.
_BITS_LINESTYLE = ('--', '-.', ':', (0, (5, 1)))


def _style(mechanism: str) -> dict:
  m = mechanisms.REGISTRY.get(mechanism)
  if m is None:  # a run recorded by a mechanism this code no longer has
    return dict(color='tab:gray', marker='x', label=mechanism)
  return dict(color=m.color, marker=m.marker, label=m.label)


def _bits_label(bits: int) -> str:
  return f'{bits}-bit updates' if bits else 'float32 updates'


def _variant_label(mechanism: str, bits: int) -> str:
  label = _style(mechanism)['label'] if mechanisms.get(mechanism).private else 'non-private'
  return f'{label}, {_bits_label(bits)}' if bits else label


def _save(fig, workdir: str, name: str) -> list[str]:
  paths = []
  for fmt in FORMATS:
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=150, bbox_inches='tight')
    path = os.path.join(workdir, FIGURE_DIR, f'{name}.{fmt}')
    rundir.atomic_write_bytes(path, buf.getvalue())
    paths.append(path)
  plt.close(fig)
  return paths


def _title(runs: Sequence[sweep_summary.Run], what: str) -> str:
  c = runs[0].config
  samplings = sorted({sampling.get(r.config.get('sampling', 'poisson')).label
                      for r in runs if mechanisms.get(r.mechanism).private}) or ['Poisson']
  task = tasks.for_run(c).title
  canaries = c['resolved'].get('canaries', 0)
  return (f"{what}\n{task}, {c['data']['num_users']} synthetic users "
          f"({c['resolved']['population_size'] - canaries} training"
          + (f" + {canaries} audit canaries" if canaries else '') + "), "
          f"{c['clients_per_round']} clients/round ({', '.join(samplings)}), "
          f"{c['num_rounds']} rounds, δ={c['dp']['delta']:g}")


def _series(group: Sequence[sweep_summary.Run], column: str):
  """Rounds and per-round mean/std over seeds of a column, where it is present."""
  per_round: dict[int, list[float]] = {}
  for run in group:
    for row in run.rows:
      value = rundir.to_float(row.get(column, ''))
      if value is not None and math.isfinite(value):
        per_round.setdefault(int(row['round']), []).append(value)
  rounds = sorted(per_round)
  mean = np.array([np.mean(per_round[r]) for r in rounds])
  std = np.array([np.std(per_round[r], ddof=1) if len(per_round[r]) > 1 else 0.0
                  for r in rounds])
  return np.array(rounds), mean, std


def _private_groups(runs):
  groups = [g for g in sweep_summary.group_by_setting(runs)
            if mechanisms.get(g[0].mechanism).private]
  return sorted(groups, key=lambda g: (g[0].mechanism, g[0].final()['epsilon']))


def frontier(runs: Sequence[sweep_summary.Run], workdir: str) -> list[str]:
  summary = sweep_summary.summarize(runs)
  task = sweep_summary.task_of(summary)
  fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
  panels = ((axes[0], task.headline.column, task.headline.axis_label),
            (axes[1], task.accuracy.column, task.accuracy.axis_label))
  for ax, metric, ylabel in panels:
    for row in [r for r in summary if not mechanisms.get(r['mechanism']).private]:
      mean, std = row[f'{metric}_mean'], row[f'{metric}_std'] or 0.0
      label = _variant_label('none', row['compression_bits'])
      if row['compression_bits']:  # in the communication figure
        continue
      ax.axhspan(mean - std, mean + std, color='0.85', zorder=0)
      ax.axhline(mean, color='0.4', lw=1.2,
                 label=f"{label} (mean ± sd, {row['num_seeds']} seeds)")
    widths = sorted({r['compression_bits'] for r in summary if r['compression_bits']},
                    reverse=True)
    for mechanism, bits in sorted({(r['mechanism'], r['compression_bits'])
                                   for r in summary if mechanisms.get(r['mechanism']).private}):
      rows = sorted((r for r in summary
                     if (r['mechanism'], r['compression_bits']) == (mechanism, bits)),
                    key=lambda r: r['epsilon_mean'])
      style = dict(_style(mechanism), label=_variant_label(mechanism, bits))
      ax.errorbar([r['epsilon_mean'] for r in rows], [r[f'{metric}_mean'] for r in rows],
                  yerr=[r[f'{metric}_std'] or 0.0 for r in rows], capsize=3, lw=1.5,
                  ls=(_BITS_LINESTYLE[widths.index(bits) % len(_BITS_LINESTYLE)]
                      if bits else '-'),
                  **style)
    baseline = task.accuracy_baseline(summary)
    if metric == task.accuracy.column and baseline:
      ax.axhline(baseline[0], color='0.6', ls=':', lw=1,
                 label=f'{baseline[1]} ({baseline[0]:.3f})')
    ax.set_xscale('log')
    eps_values = sorted({r['epsilon_mean'] for r in summary
                         if mechanisms.get(r['mechanism']).private})
    if eps_values:
      ax.set_xticks(eps_values)
      ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda x, _: f'{x:.3g}'))
      ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_xlabel('ε spent (log scale)')
    ax.set_ylabel(ylabel)
    ax.grid(True, which='both', alpha=0.3)
    ax.legend(loc='best', fontsize=8, framealpha=0.9)
  fig.suptitle(_title(runs, 'Privacy-utility frontier (error bars: ± 1 sd over seeds)'),
               fontsize=10)
  return _save(fig, workdir, 'frontier')


def communication(runs: Sequence[sweep_summary.Run], workdir: str) -> list[str]:
  """Held-out AUC against the bytes a client sent per round, through the bit widths."""
  summary = [r for r in sweep_summary.summarize(runs) if r['client_bytes_mean'] is not None]
  if not summary:
    raise ValueError('No run of the sweep logged client_bytes (runtime.engine=mapreduce '
                     'logs them); nothing to plot for communication.')
  headline = sweep_summary.task_of(summary).headline
  metric = headline.column
  fig, ax = plt.subplots(figsize=(8, 4.6))
  lines = sorted({(r['mechanism'], r['target_epsilon'] or 0.0) for r in summary},
                 key=lambda k: (mechanisms.get(k[0]).private, k))
  seen: dict[str, int] = {}
  for mechanism, eps in lines:
    rows = sorted((r for r in summary
                   if (r['mechanism'], r['target_epsilon'] or 0.0) == (mechanism, eps)),
                  key=lambda r: r['client_bytes_mean'])
    if not mechanisms.get(mechanism).private:
      style = dict(color='black', marker='o', label='non-private')
    else:  # budgets of one mechanism: its colour, one line style each
      k = seen[mechanism] = seen.get(mechanism, -1) + 1
      style = dict(_style(mechanism), ls=('-', '--', ':', '-.')[k % 4],
                   mfc=('white' if k % 2 else None),
                   label=f"{_style(mechanism)['label']}, ε={rows[0]['epsilon_mean']:.3g}")
    ax.errorbar([r['client_bytes_mean'] for r in rows], [r[f'{metric}_mean'] for r in rows],
                yerr=[r[f'{metric}_std'] or 0.0 for r in rows], capsize=3, lw=1.5, **style)
  # One tick per bit width, at the mean bytes of its settings.
  ticks = {}
  for r in summary:
    ticks.setdefault(r['compression_bits'], []).append(r['client_bytes_mean'])
  ax.set_xscale('log')
  positions = [float(np.mean(v)) for v in ticks.values()]
  ax.set_xticks(positions)
  ax.set_xticklabels([f"{f'{b} bit' if b else 'float32'}\n{x:.0f} B"
                      for b, x in zip(ticks, positions)], fontsize=8)
  ax.xaxis.set_minor_locator(ticker.NullLocator())
  ax.set_xlabel('bytes sent per client per round (log scale)')
  ax.set_ylabel(headline.axis_label)
  ax.grid(True, which='both', alpha=0.3)
  ax.legend(loc='lower right', fontsize=8, framealpha=0.9)
  ax.set_title(_title(runs, 'Communication vs utility: uniform quantization of the '
                      'updates (± 1 sd over seeds)'), fontsize=10)
  return _save(fig, workdir, 'communication')


def _by_round(runs, workdir, column, ylabel, name, what, *, groups=None,
              log_y=False) -> list[str]:
  groups = groups if groups is not None else sweep_summary.group_by_setting(runs)
  fig, ax = plt.subplots(figsize=(8, 4.6))
  private = _private_groups(runs)
  eps_values = sorted({g[0].final()['epsilon'] for g in private})
  cmap = plt.get_cmap('viridis')
  for group in groups:
    rounds, mean, std = _series(group, column)
    if not len(rounds):
      continue
    first = group[0]
    if not mechanisms.get(first.mechanism).private:
      color, ls = 'black', ':' if first.compression_bits else '-'
      label = _variant_label('none', first.compression_bits)
    else:
      eps = first.final()['epsilon']
      color = cmap(eps_values.index(eps) / max(1, len(eps_values) - 1) * 0.9)
      m = mechanisms.REGISTRY.get(first.mechanism)
      ls = m.linestyle if m else ':'
      label = f'{_variant_label(first.mechanism, first.compression_bits)}, ε={eps:.3g}'
    ax.plot(rounds, mean, color=color, ls=ls, lw=1.5, label=label,
            marker='o' if len(rounds) < 15 else None, ms=3)
    ax.fill_between(rounds, mean - std, mean + std, color=color, alpha=0.15, lw=0)
  ax.set_xlabel('round')
  ax.set_ylabel(ylabel)
  if log_y:
    ax.set_yscale('log')
  ax.grid(True, alpha=0.3)
  ax.legend(loc='center left', bbox_to_anchor=(1.01, 0.5), fontsize=8)
  ax.set_title(_title(runs, what), fontsize=10)
  return _save(fig, workdir, name)


def calibration(workdir: str, result: Optional[dict] = None) -> list[str]:
  """The reliability diagram of one run (`calibration.csv`, `evaluation.json`).

  `result`: the evaluation result, when it is drawn before `evaluation.json` is
  written (training writes that file last, so a failed figure is retried).
  """
  bins = [b for b in rundir.read_csv(os.path.join(workdir, rundir.CALIBRATION_FILE))
          if int(b['count'])]
  if result is None:
    result = rundir.read_json(os.path.join(workdir, rundir.EVALUATION_FILE))
  config = rundir.read_json(os.path.join(workdir, rundir.CONFIG_FILE))
  statement = rundir.read_json(os.path.join(workdir, rundir.PRIVACY_FILE))
  fig, (ax, hist) = plt.subplots(2, 1, figsize=(5.6, 6.4), sharex=True,
                                 gridspec_kw={'height_ratios': [3, 1]})
  predicted = [float(b['mean_predicted']) for b in bins]
  ax.plot([0, 1], [0, 1], color='0.6', ls='--', lw=1, label='perfectly calibrated')
  ax.plot(predicted, [float(b['observed_rate']) for b in bins], marker='o', lw=1.5,
          color='tab:blue', label='model (bins of predicted probability)')
  ax.set_ylabel('observed churn rate')
  ax.set_xlim(0, 1)
  ax.set_ylim(0, 1)
  ax.grid(True, alpha=0.3)
  ax.legend(loc='upper left', fontsize=8)
  eps = statement.get('epsilon')
  ax.set_title(
      f"Calibration on held-out users, round {result['round']}\n"
      f"{config['dp']['mechanism']}, "
      + (f'ε={eps:.3g}' if eps is not None else 'non-private')
      + f", ECE {result['calibration']['expected_calibration_error']:.3f}", fontsize=10)
  lows = [float(b['bin_low']) for b in bins]
  widths = [float(b['bin_high']) - float(b['bin_low']) for b in bins]
  hist.bar(lows, [int(b['count']) for b in bins], width=widths, align='edge',
           color='tab:blue', alpha=0.5, edgecolor='white')
  hist.set_yscale('log')
  hist.set_xlabel('predicted churn probability')
  hist.set_ylabel('examples')
  hist.grid(True, alpha=0.3)
  return _save(fig, workdir, 'calibration')


# Claims above this are runs without (meaningful) noise: drawn in a column of their own.
_NO_NOISE_CLAIM = 1e3


def audit(runs: Sequence[sweep_summary.Run], workdir: str) -> list[str]:
  """Estimated against claimed epsilon for every audited run (module docstring)."""
  audited = [r for r in runs if r.audit is not None]
  claims = [sweep_summary.audit_value(r.audit['claimed_epsilon']) for r in audited]
  finite = [c for c in claims if c <= _NO_NOISE_CLAIM]
  edge = (max(finite) if finite else 1.0) * 4
  fig, axes = plt.subplots(1, 2, figsize=(11, 4.6), sharey=True)
  panels = ((axes[0], 'final_model', 'final model delta (exact null)'),
            (axes[1], 'all_iterates', "all iterates (null fitted to unseen canaries)"))
  # Side by side at one claim: each mechanism a little to the left or right.
  names = sorted({r.mechanism for r in audited})
  shift = {m: 1.09 ** (i - (len(names) - 1) / 2) for i, m in enumerate(names)}
  # Runs at another client learning rate than most (canaries the users do not hide):
  # hollow markers, labelled with it.
  usual = _usual_learning_rate(audited)
  top = 0.0
  for ax, variant, title in panels:
    labelled = set()
    for run, claim in zip(audited, claims):
      x = (claim if claim <= _NO_NOISE_CLAIM else edge) * shift[run.mechanism]
      top = max(top, _audit_point(ax, run, variant, x, usual, labelled))
    ax.set_title(title, fontsize=9)
  for ax, _, _ in panels:
    _audit_axes(ax, finite, claims, edge, top,
                confidence=1 - audited[0].audit.get('alpha', 0.05))
  axes[0].set_ylabel('estimated ε (canaries; bars: 90% bootstrap)')
  axes[0].legend(loc='upper left', fontsize=7, framealpha=0.9)
  a = audited[0].audit
  sizes = ' and '.join(str(d) for d in sorted({r.audit['dimension'] for r in audited}))
  fig.suptitle(_title(audited, 'Empirical privacy audit: estimated against claimed ε '
                      f"({a['canaries']} canaries, {a['unseen_canaries']} unseen, "
                      f"{sizes} parameters; red edge: flagged)"), fontsize=9)
  fig.tight_layout()
  return _save(fig, workdir, 'audit')


def _audit_point(ax, run, variant: str, x: float, usual, labelled: set) -> float:
  """One run's estimate (its 90% interval as a bar) and lower bound at claim `x`;
  returns the largest finite value drawn."""
  v = run.audit[variant]
  y = sweep_summary.audit_value(v['epsilon_estimate'])
  low, high = (sweep_summary.audit_value(e) for e in v['epsilon_interval_90'])
  style = _style(run.mechanism)
  label = style.pop('label')
  rate = _learning_rate(run)
  if rate != usual:
    label += f', client learning rate {rate:g}'
    style['mfc'] = 'white'
  flagged = v['exceeds_claim']
  ax.errorbar([x], [min(y, 1e6)], yerr=[[max(y - low, 0)], [max(high - y, 0)]]
              if math.isfinite(high) and math.isfinite(y) else None,
              capsize=2, ls='none', markeredgecolor='red' if flagged else None,
              label=None if label in labelled else label, alpha=0.85, **style)
  ax.plot([x], [sweep_summary.audit_value(v['epsilon_lower_bound'])], ls='none',
          marker='v', mfc='none', color=style['color'], ms=5)
  labelled.add(label)
  return max([0.0] + [e for e in (y, low, high) if math.isfinite(e)])


def _audit_axes(ax, finite, claims, edge: float, top: float, *, confidence: float) -> None:
  """The diagonal, the lower-bound legend entry, the no-noise column and the scales."""
  lim = max(edge * 1.5, top * 1.2)
  diagonal = np.geomspace(0.1, edge / 2, 50)
  ax.plot(diagonal, diagonal, color='0.5', ls='--', lw=1, label='estimate = claim')
  ax.plot([], [], ls='none', marker='v', mfc='none', color='0.3',
          label=f'lower bound ({confidence:.0%} confidence)')
  if len(finite) < len(claims):  # the no-noise column is not on the claim axis
    ax.axvline(edge / 1.6, color='0.6', lw=0.8)
  ax.set_xscale('log')
  ax.set_yscale('symlog', linthresh=0.5)
  ax.set_xlim(min(finite or [1.0]) / 1.6, edge * 1.6)
  ax.set_ylim(0, lim)
  ticks = sorted(set(round(c, 3) for c in finite)) + (
      [edge] if len(finite) < len(claims) else [])
  ax.set_xticks(ticks)
  ax.set_xticklabels([f'{t:.3g}' if t < edge else 'no\nnoise' for t in ticks],
                     fontsize=7)
  ax.xaxis.set_minor_formatter(ticker.NullFormatter())
  ax.set_xlabel('claimed ε (accountant)')
  ax.grid(True, which='both', alpha=0.3)


def _num_users(run: sweep_summary.Run) -> int:
  return int(run.config['data']['num_users'])


def _model_key(run: sweep_summary.Run) -> str:
  """A run's model settings (its config's `model` section), as a sortable key."""
  return json.dumps(run.config.get('model', {}), sort_keys=True)


def _model_size(run: sweep_summary.Run) -> int:
  """Trainable parameters of a run's model."""
  config = ml_collections.ConfigDict(run.config)
  return int(sum(tasks.for_run(run.config).tensor_sizes(config)))


def population_frontier(runs: Sequence[sweep_summary.Run], workdir: str) -> list[str]:
  """The frontier by population size (see the module docstring): one row of panels per
  model size when the sweep has several."""
  summary = sweep_summary.summarize(runs)
  task = sweep_summary.task_of(summary)
  by_setting = {sweep_summary.setting_label(g): g for g in
                sweep_summary.group_by_setting(runs)}
  populations = sorted({_num_users(r) for r in runs})  # one color each, in every row
  colors = dict(zip(populations, plt.cm.viridis(np.linspace(0, 0.85, len(populations)))))
  models = {_model_key(r): r for r in runs}  # one run of each model
  if len(models) > 1:  # smallest model first
    models = dict(sorted(models.items(), key=lambda kv: _model_size(kv[1])))
  fig, axes = plt.subplots(len(models), 2, figsize=(12, 4.2 * len(models) + 0.4),
                           squeeze=False)
  for (key, example), (ax, gap_ax) in zip(models.items(), axes):
    rows = [r for r in summary if _model_key(by_setting[r['setting']][0]) == key]
    _population_panels(rows, by_setting, task, ax, gap_ax, colors)
    if len(models) > 1:
      size = _model_size(example)
      ax.set_title(f'{size:,}-parameter model', fontsize=9)
      gap_ax.set_title(f'{size:,}-parameter model: the cost of DP', fontsize=9)
  handles, labels = axes[0][0].get_legend_handles_labels()
  fig.legend(handles, labels, loc='lower center', ncol=2, fontsize=8,
             bbox_to_anchor=(0.5, -0.1 / len(models)))
  c = runs[0].config
  fig.suptitle(f"Privacy-utility frontier by population size (error bars: ± 1 sd over "
               f"seeds)\n{task.title}, adaptive clipping, {c['num_rounds']} rounds, "
               f"δ={c['dp']['delta']:g}", fontsize=10)
  fig.tight_layout()
  return _save(fig, workdir, 'population_frontier')


def _population_panels(summary, by_setting, task, ax, gap_ax, colors) -> None:
  """One model's frontier per population (ax) and its gap to non-private (gap_ax);
  `colors`: population -> color."""
  metric = task.headline.column
  populations = sorted({_num_users(by_setting[r['setting']][0]) for r in summary})
  for users in populations:
    color = colors[users]
    rows = [r for r in summary if _num_users(by_setting[r['setting']][0]) == users]
    reference = [r for r in rows if not mechanisms.get(r['mechanism']).private]
    private = sorted((r for r in rows if mechanisms.get(r['mechanism']).private),
                     key=lambda r: r['epsilon_mean'])
    first = by_setting[(reference or private)[0]['setting']][0].config
    label = (f"{users:,} users ({first['resolved']['population_size']:,} training, "
             f"{first['clients_per_round']:g} clients/round)")
    eps = [r['epsilon_mean'] for r in private]
    values = np.array([r[f'{metric}_mean'] for r in private])
    ax.errorbar(eps, values, yerr=[r[f'{metric}_std'] or 0.0 for r in private],
                color=color, marker='o', capsize=3, lw=1.5, label=label)
    if reference:
      ref = reference[0][f'{metric}_mean']
      ax.axhline(ref, color=color, ls='--', lw=1)
      gap_ax.plot(eps, ref - values, color=color, marker='o', lw=1.5, label=label)
  # Ticks at the budgets (a calibrated run spends its target to four digits or so).
  budgets = sorted({float(f"{r['epsilon_mean']:.2g}") for r in summary
                    if mechanisms.get(r['mechanism']).private})
  for a in (ax, gap_ax):
    a.set_xscale('log')
    a.set_xticks(budgets)
    a.xaxis.set_major_formatter(ticker.FuncFormatter(lambda x, _: f'{x:.3g}'))
    a.xaxis.set_minor_formatter(ticker.NullFormatter())
    a.set_xlabel('ε spent (log scale)')
    a.grid(True, which='both', alpha=0.3)
  ax.set_ylabel(f'{task.headline.axis_label} (dashed: non-private)')
  gap_ax.set_ylabel(f'non-private {task.headline.label} − private {task.headline.label}')
  gap_ax.axhline(0, color='0.4', lw=0.8)


def plot_sweep(workdir: str) -> list[str]:
  """Writes every figure of the sweep in `workdir`; returns their paths."""
  every_run = sweep_summary.collect_runs(workdir)
  if not every_run:
    raise ValueError(f'No run directories (with config.json, metrics.csv and '
                     f'privacy.json) under {workdir}.')
  if len({_num_users(r) for r in every_run}) > 1:
    return population_frontier(every_run, workdir)
  runs = _frontier_runs(every_run)
  paths = frontier(runs, workdir)
  headline = sweep_summary.task_of(sweep_summary.summarize(runs)).headline
  paths += _by_round(runs, workdir, headline.column, headline.axis_label,
                     headline.plot_name,
                     f'{headline.axis_label[:1].upper()}{headline.axis_label[1:]} by '
                     'round (mean ± sd over seeds)')
  private = _private_groups(runs)
  if private:
    paths += _by_round(runs, workdir, 'epsilon', 'ε spent so far', 'epsilon_by_round',
                       'Privacy spent by round ({} accountant)'.format(', '.join(sorted(
                           {g[0].config['dp'].get('accountant', 'rdp').upper()
                            for g in private}))), groups=private,
                       log_y=True)
  if any(r.compression_bits for r in runs):
    paths += communication(runs, workdir)
  adaptive = [g for g in private
              if not mechanisms.REGISTRY[g[0].mechanism].fixed_clip]  # clips that move
  if adaptive:
    paths += _by_round(runs, workdir, 'clip', 'L2 clip norm', 'clip_by_round',
                       'Adaptive clip norm by round (Andrew et al. 2021)',
                       groups=adaptive)
  if any(r.audit is not None for r in every_run):
    paths += audit(every_run, workdir)
  return paths


def _learning_rate(run: sweep_summary.Run) -> Optional[float]:
  return run.config.get('client', {}).get('learning_rate')


def _usual_learning_rate(runs: Sequence[sweep_summary.Run]) -> Optional[float]:
  """The client learning rate most runs of a sweep have."""
  rates = [_learning_rate(r) for r in runs]
  return max(set(rates), key=rates.count)


def _frontier_runs(runs: Sequence[sweep_summary.Run]) -> list[sweep_summary.Run]:
  """The runs the frontier and the by-round figures draw: not the audit's extra
  points (private runs without meaningful noise, runs at another client learning rate
  than most), which only the audit figure shows."""
  usual = _usual_learning_rate(runs)
  kept = [r for r in runs if _learning_rate(r) == usual and not (
      mechanisms.get(r.mechanism).private
      and (r.privacy.get('epsilon') or 0) > _NO_NOISE_CLAIM)]
  return kept or list(runs)


def population_calibration(rows: Sequence[dict], workdir: str, *, title: str) -> list[str]:
  """Each statistic of a population (`data.calibration.table` rows) as a dot beside its
  published range (a bar), one row per statistic, each on its own scale."""
  fig, axes = plt.subplots(len(rows), 1, figsize=(8, 0.62 * len(rows) + 1.2),
                           squeeze=False)
  for ax, row in zip(axes[:, 0], rows):
    low, high, value = row['published_low'], row['published_high'], row['synthetic']
    span = max(high, value) - min(low, value)
    lo, hi = min(low, value) - 0.15 * span, max(high, value) + 0.15 * span
    ax.barh(0, high - low, left=low, height=0.6, color='0.8', label='published range')
    ax.plot([value], [0], 'o', color='tab:green' if row['within'] else 'tab:red',
            label='synthetic')
    ax.set_xlim(lo, hi)
    ax.set_yticks([])
    ax.set_ylabel(row['description'], rotation=0, ha='right', va='center', fontsize=8)
    ax.tick_params(axis='x', labelsize=7)
  handles, labels = axes[0, 0].get_legend_handles_labels()
  fig.legend(handles, labels, fontsize=8, loc='lower center', ncol=2)
  axes[0, 0].set_title(title, fontsize=10)
  fig.tight_layout(rect=(0, 0.04, 1, 1))
  return _save(fig, workdir, 'calibration')


_AUDIT_PROPERTIES = (('noise scale', 'o'), ('noise correlation', 's'), ('clip', 'D'),
                     ('sampling', 'v'), ('epsilon', '^'))


def _audit_ratio(name: str, check: dict) -> Optional[float]:
  measured, claimed = check['measured'], check['claimed']
  if measured is None or claimed is None:
    return None
  if name == 'noise correlation':
    return 1 + abs(measured - claimed)
  return measured / claimed if claimed else None


def _audit_rows(results: dict) -> list[tuple[str, dict, bool]]:
  rows = [(f"{r['label']}, {r['rounds']} round{'s' if r['rounds'] > 1 else ''}", r, False)
          for r in results['mechanisms']]
  rows += [(f"sabotaged: {r['label']}", r, True) for r in results['faults']]
  rows += [(f'sampling: {name}', {'checks': {'sampling': check}}, False)
           for name, check in results['sampling'].items()]
  return rows + [(f'sabotaged sampling: {name}', {'checks': {'sampling': check}}, True)
                 for name, check in results['sampling_faults'].items()]


def _audit_property_panel(ax, rows) -> None:
  labelled = set()
  for y, (_, row, _) in enumerate(rows):
    for name, marker in _AUDIT_PROPERTIES:
      check = row['checks'].get(name)
      ratio = _audit_ratio(name, check) if check else None
      if ratio is None:
        continue
      ax.scatter(min(max(ratio, 1e-3), 1e3), y, marker=marker, s=40,
                 color='tab:blue' if check['ok'] else 'tab:red',
                 label=None if name in labelled else name, zorder=3)
      labelled.add(name)
  ax.axvspan(0.9, 1.1, color='0.9', zorder=0)
  ax.set_xscale('log')
  ax.set_xlim(1e-3, 1.5e3)
  ax.set_xlabel('measured / claimed (clipped to [1e-3, 1e3]); red: check failed')
  ax.legend(loc='lower right', fontsize='small')


def _audit_epsilon_panel(ax, rows) -> None:
  for y, (_, row, _) in enumerate(rows):
    if 'epsilon' not in row:
      continue
    eps = row['epsilon']
    claimed = row['claimed_epsilon']
    ax.scatter(claimed, y, marker='|', s=200, color='black',
               label='claimed' if y == 0 else None, zorder=3)
    if eps['estimate'] is not None:
      estimate = min(eps['estimate'], 1e6)
      low, high = (min(max(v, 1e-2), 1e6) if v is not None else 1e6
                   for v in eps['interval'])
      ax.errorbar(estimate, y, color='tab:blue', fmt='o',
                  xerr=[[max(estimate - low, 0)], [max(high - estimate, 0)]],
                  label='estimate (interval)' if y == 0 else None)
    ax.scatter(max(eps['lower_bound'] or 0, 1e-2), y, marker='>', color='tab:green',
               label='lower bound' if y == 0 else None, zorder=3)
  ax.set_xscale('log')
  ax.set_xlim(1e-2, 1e6)
  ax.set_xlabel('epsilon at delta')
  ax.legend(loc='lower right', fontsize='small')


def mechanism_audit(results: dict, directory: str) -> list[str]:
  """The white-box audit's figure (`mechanism_audit.audit_suite`'s results)."""
  rows = _audit_rows(results)
  fig, (left, right) = plt.subplots(1, 2, figsize=(13, 0.45 * len(rows) + 2),
                                    sharey=True)
  _audit_property_panel(left, rows)
  _audit_epsilon_panel(right, rows)
  left.set_yticks(range(len(rows)))
  left.set_yticklabels([label for label, _, _ in rows])
  for tick, (_, _, sabotaged) in zip(left.get_yticklabels(), rows):
    tick.set_color('tab:red' if sabotaged else 'black')
  left.invert_yaxis()
  fig.suptitle('White-box audit of each mechanism (noise multiplier 1, clip 1); '
               'sabotaged aggregators in red')
  return _save(fig, directory, 'mechanisms')


AUDIT_STATISTICS = (('final_model', 'final model', 'o'), ('all_iterates', 'all iterates', 's'),
                    ('first_insertion', 'first insertion', '^'))


def audit_power_rows(directories: Sequence[str]) -> list[dict]:
  """One row per run with canaries under `directories` (committed sweeps): its model
  size, noise setting, claims and each statistic's estimate and lower bound."""
  rows = []
  for directory in directories:
    for run in sweep_summary.collect_runs(directory):
      if run.audit is None:
        continue
      a, dp = run.audit, run.config['dp']
      row = {'task': run.config['task'], 'parameters': a['dimension'],
             'setting': ('no noise' if dp['target_epsilon'] is None
                         else f"epsilon {dp['target_epsilon']:g}"),
             'claimed_epsilon': a['claimed_epsilon'],
             'first_insertion_claim': a.get('first_insertion_claim')}
      for key, _, _ in AUDIT_STATISTICS:
        row[f'{key}_estimate'] = a[key]['epsilon_estimate']
        row[f'{key}_lower_bound'] = a[key]['epsilon_lower_bound']
      rows.append(row)
  return sorted(rows, key=lambda r: (r['setting'], r['parameters']))


def audit_power(rows: Sequence[dict], directory: str) -> list[str]:
  """The canaries' lower bounds against the model's size, a panel per noise setting."""
  settings = sorted({r['setting'] for r in rows}, key=lambda s: (s != 'no noise', s))
  fig, axes = plt.subplots(1, len(settings), figsize=(4.5 * len(settings), 4),
                           squeeze=False)
  for ax, setting in zip(axes[0], settings):
    chosen = sorted((r for r in rows if r['setting'] == setting),
                    key=lambda r: r['parameters'])
    sizes = [r['parameters'] for r in chosen]
    for key, label, marker in AUDIT_STATISTICS:
      ax.plot(sizes, [max(r[f'{key}_lower_bound'] or 0, 1e-2) for r in chosen],
              marker=marker, label=f'{label} lower bound')
    if setting != 'no noise':
      ax.plot(sizes, [r['claimed_epsilon'] for r in chosen], 'k--', label='claimed')
      ax.plot(sizes, [r['first_insertion_claim'] for r in chosen], 'k:',
              label='one round, no amplification')
    ax.set(xscale='log', yscale='log', title=setting, xlabel='model parameters',
           ylabel='epsilon lower bound (95%; 0 drawn at 0.01)')
    ax.legend(fontsize='small')
  fig.suptitle('Canary audit: lower bounds by model size (1000 canaries, fixed '
               'clipping, 40 rounds)')
  return _save(fig, directory, 'power')
