"""Human-readable summaries of a run directory, read from its files only (no TF)."""

from __future__ import annotations

import os

from fl_analytics.core import rundir
from fl_analytics.privacy import sampling as sampling_lib
from fl_analytics import tasks


def last_evaluated_row(rows: list[dict[str, str]]) -> dict[str, str]:
  evaluated = [r for r in rows if r.get('eval_loss')]
  return evaluated[-1] if evaluated else {}


def run_summary(workdir: str) -> str:
  """A few lines: rounds, the privacy spent, held-out metrics and where files are."""
  rows = rundir.read_csv(os.path.join(workdir, rundir.METRICS_FILE))
  statement = rundir.read_json(os.path.join(workdir, rundir.PRIVACY_FILE))
  if statement['epsilon'] is None:
    privacy_line = 'no differential privacy (the non-private reference)'
  else:
    sampling = sampling_lib.get(statement['sampling']).summary.format(**statement)
    privacy_line = (
        f"epsilon {statement['epsilon']:.3g} at delta {statement['delta']:g} "
        f"({statement['mechanism']}, noise multiplier "
        f"{statement['noise_multiplier']:.3g}, {statement['accountant'].upper()} "
        f"accountant, {sampling} of {statement['population_size']} users; "
        f"unit: {statement['unit_of_privacy']})")
  lines = [f"{len(rows)} rounds, {privacy_line}."]
  ev = last_evaluated_row(rows)
  task = tasks.for_run(rundir.read_json(os.path.join(workdir, rundir.CONFIG_FILE)))
  if ev:
    baseline = task.accuracy_baseline([{k + '_mean': float(v) for k, v in ev.items()
                                        if k.startswith('eval_') and v != ''}])
    lines.append(
        f"Held-out users at round {ev['round']}: {task.headline.name} "
        f"{float(ev[task.headline.column]):.3f}, {task.accuracy.name} "
        f"{float(ev[task.accuracy.column]):.3f}"
        + (f' ({baseline[1]}: {baseline[0]:.3f})' if baseline else '')
        + f", log loss {float(ev['eval_loss']):.3f}.")
  ev_path = os.path.join(workdir, rundir.EVALUATION_FILE)
  final = rundir.read_json(ev_path) if os.path.exists(ev_path) else None
  if final:
    users = final['per_user']
    lines.append(
        f"Per held-out user (round {final['round']}, {users['users']} users): log loss "
        f"median {users['loss_percentiles']['p50']:.3f} (p10 "
        f"{users['loss_percentiles']['p10']:.3f}, p90 {users['loss_percentiles']['p90']:.3f}); "
        f"worse than a constant prediction for {100 * users['share_worse_than_baseline_loss']:.0f}% "
        'of users.' + (f" Calibration error (ECE) "
                       f"{final['calibration']['expected_calibration_error']:.3f}."
                       if 'calibration' in final else ''))
    pers = final.get('personalization')
    if pers:
      metric = 'auc' if 'auc' in pers['global'] else 'accuracy'
      lines.append(
          f"Personalization ({pers['steps']} local steps on each user's early days, "
          f"scored on their later days, {pers['users']} users): "
          f"{'AUC' if metric == 'auc' else 'top-1 accuracy'} "
          f"{pers['global'][metric]:.3f} -> {pers['personalized'][metric]:.3f}, log loss "
          f"{pers['global']['loss']:.3f} -> {pers['personalized']['loss']:.3f}; "
          f"{100 * pers['share_of_users_improved']:.0f}% of users improved.")
  audit_path = os.path.join(workdir, rundir.AUDIT_FILE)
  audit = rundir.read_json(audit_path) if os.path.exists(audit_path) else None
  if audit:
    lines.append(audit_line(audit))
  lines.append(f'Results in {workdir}/:')
  for name, what in (
      (rundir.CONFIG_FILE, 'the resolved config'),
      (rundir.METRICS_FILE, 'one row per round'),
      (rundir.PRIVACY_FILE, 'the privacy statement'),
      *(((rundir.EVALUATION_FILE, 'per-user metrics, '
          + ('calibration, ' if 'calibration' in final else '') + 'personalization'),
         *(((rundir.USERS_FILE, 'one row per held-out user'),)
           if os.path.exists(os.path.join(workdir, rundir.USERS_FILE)) else ()),
         *((('figures/', 'calibration.png: the reliability diagram'),)
           if 'calibration' in final else ())) if final else ()),
      *(((rundir.AUDIT_FILE, 'the canaries\' epsilon estimate beside the claim'),)
        if audit else ()),
      (rundir.TENSORBOARD_DIR + '/', 'TensorBoard summaries'),
      (rundir.CHECKPOINT_DIR + '/', 'server state; run the command again to resume'),
  ):
    lines.append(f'  {name:<15} {what}')
  return '\n'.join(lines)


def _eps(value) -> str:
  return 'inf' if value is None else f'{value:.3g}'


def audit_line(audit: dict) -> str:
  """One line of `audit.json`: the claim, both estimates with lower bounds, the verdict."""
  final, every = audit['final_model'], audit['all_iterates']
  return (
      f"Audit ({audit['canaries']} canaries, {audit['dimension']} parameters): claimed "
      f"epsilon {_eps(audit['claimed_epsilon'])}; estimated "
      f"{_eps(final['epsilon_estimate'])} (lower bound "
      f"{_eps(final['epsilon_lower_bound'])}) from the final model, "
      f"{_eps(every['epsilon_estimate'])} (lower bound "
      f"{_eps(every['epsilon_lower_bound'])}) from all iterates; membership attack AUC "
      f"{audit['membership_inference']['auc']:.3f}: {audit['verdict']}.")
