"""Human-readable summaries of a run directory, read from its files only (no TF)."""

from __future__ import annotations

import os
from typing import Optional

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
  lines = [f"{len(rows)} rounds, {_privacy_line(statement)}."]
  if statement.get('simulation_only'):  # the same caveats as privacy.json
    lines.append('Simulation only, not a deployment guarantee'
                 + (' (differentially_private: false)'
                    if not statement.get('differentially_private') else '')
                 + ': ' + '; '.join(statement['simulation_caveats']) + '.')
  ev = last_evaluated_row(rows)
  config = rundir.read_json(os.path.join(workdir, rundir.CONFIG_FILE))
  task = tasks.for_run(config)
  engine = config.get('resolved', {}).get('engine') or config.get('runtime', {}).get('engine')
  if engine:
    why = config.get('resolved', {}).get('engine_reason')
    lines.append(f'Engine: {engine}' + (f' ({why}).' if why else '.'))
  if ev:
    lines.append(_held_out_line(task, ev))
  ev_path = os.path.join(workdir, rundir.EVALUATION_FILE)
  final = rundir.read_json(ev_path) if os.path.exists(ev_path) else None
  if final:
    lines += _final_evaluation_lines(task, final)
  audit_path = os.path.join(workdir, rundir.AUDIT_FILE)
  audit = rundir.read_json(audit_path) if os.path.exists(audit_path) else None
  if audit:
    lines.append(audit_line(audit))
  lines.append(f'Results in {workdir}/:')
  lines += [f'  {name:<15} {what}' for name, what in _files(workdir, final, audit)]
  return '\n'.join(lines)


def _privacy_line(statement: dict) -> str:
  if statement['epsilon'] is None:
    return 'no differential privacy (the non-private reference)'
  sampling = sampling_lib.get(statement['sampling']).summary.format(**statement)
  return (f"epsilon {statement['epsilon']:.3g} at delta {statement['delta']:g} "
          f"({statement['mechanism']}, noise multiplier "
          f"{statement['noise_multiplier']:.3g}, {statement['accountant'].upper()} "
          f"accountant, {sampling} of {statement['population_size']} users; "
          f"unit: {statement['unit_of_privacy']})")


def _held_out_line(task, ev: dict) -> str:
  baseline = task.accuracy_baseline([{k + '_mean': float(v) for k, v in ev.items()
                                      if k.startswith('eval_') and v != ''}])
  return (f"Held-out users at round {ev['round']}: {task.headline.name} "
          f"{float(ev[task.headline.column]):.3f}, {task.accuracy.name} "
          f"{float(ev[task.accuracy.column]):.3f}"
          + (f' ({baseline[1]}: {baseline[0]:.3f})' if baseline else '')
          + f", log loss {float(ev['eval_loss']):.3f}.")


def _final_evaluation_lines(task, final: dict) -> list[str]:
  users = final['per_user']
  p = users['loss_percentiles']
  lines = [
      f"Per held-out user (round {final['round']}, {users['users']} users): log loss "
      f"median {p['p50']:.3f} (p10 {p['p10']:.3f}, p90 {p['p90']:.3f}); worse than a "
      f"constant prediction for {100 * users['share_worse_than_baseline_loss']:.0f}% "
      'of users.' + (f" Calibration error (ECE) "
                     f"{final['calibration']['expected_calibration_error']:.3f}."
                     if 'calibration' in final else '')]
  bigram = final.get('per_user_bigram')
  if bigram:
    lines.append(f"Per-user bigram baseline ({bigram['examples']} examples): top-1 "
                 f"{bigram['accuracy']:.3f}, top-3 {bigram['top3_accuracy']:.3f}.")
  pers = final.get('personalization')
  if pers:
    metric = task.personalization
    key = metric.column[len('eval_'):]
    lines.append(
        f"Personalization ({pers['steps']} local steps on each user's early days, "
        f"scored on their later days, {pers['users']} users): {metric.name} "
        f"{pers['global'][key]:.3f} -> {pers['personalized'][key]:.3f}, log loss "
        f"{pers['global']['loss']:.3f} -> {pers['personalized']['loss']:.3f}; "
        f"{100 * pers['share_of_users_improved']:.0f}% of users improved.")
  return lines


def _files(workdir: str, final: Optional[dict], audit: Optional[dict]):
  """(name, what it holds) of the run directory's files, as far as they exist."""
  files = [(rundir.CONFIG_FILE, 'the resolved config'),
           (rundir.METRICS_FILE, 'one row per round'),
           (rundir.PRIVACY_FILE, 'the privacy statement')]
  if final:
    files.append((rundir.EVALUATION_FILE, 'per-user metrics, '
                  + ('calibration, ' if 'calibration' in final else '') + 'personalization'))
    if os.path.exists(os.path.join(workdir, rundir.USERS_FILE)):
      files.append((rundir.USERS_FILE, 'one row per held-out user'))
    if 'calibration' in final:
      files.append(('figures/', 'calibration.png: the reliability diagram'))
  if audit:
    files.append((rundir.AUDIT_FILE, 'the canaries\' epsilon estimate beside the claim'))
  files += [(rundir.TENSORBOARD_DIR + '/', 'TensorBoard summaries'),
            (rundir.CHECKPOINT_DIR + '/', 'server state; run the command again to resume')]
  return files


def _eps(value) -> str:
  return 'inf' if value is None else f'{value:.3g}'


def audit_line(audit: dict) -> str:
  """One line of `audit.json`: the claim, both estimates with lower bounds, the verdict."""
  final, every = audit['final_model'], audit['all_iterates']
  first = audit.get('first_insertion')
  return (
      f"Audit ({audit['canaries']} canaries, {audit['dimension']} parameters): claimed "
      f"epsilon {_eps(audit['claimed_epsilon'])}; estimated "
      f"{_eps(final['epsilon_estimate'])} (lower bound "
      f"{_eps(final['epsilon_lower_bound'])}) from the final model, "
      f"{_eps(every['epsilon_estimate'])} (lower bound "
      f"{_eps(every['epsilon_lower_bound'])}) from all iterates"
      + (f", {_eps(first['epsilon_estimate'])} (lower bound "
         f"{_eps(first['epsilon_lower_bound'])}) from each canary's first insertion"
         if first else '')
      + f"; membership attack AUC {audit['membership_inference']['auc']:.3f}: "
      f"{audit['verdict']}.")
