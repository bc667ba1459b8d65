"""The committed reference results cannot drift from the code.

`make reproduce` writes results/reference/. Here a short version is re-run: a few of its
runs, replayed from their own config.json for the first rounds, must match the
committed metrics.csv (a shorter run is a prefix of a longer one: eval rounds are
multiples of eval_every, and the noise multiplier is the recorded one). The committed
summary.csv must equal the summary of the committed runs, and every figure must exist.

Tolerances: epsilon to 1e-9 relative (pure accounting); losses, accuracy and AUC to
0.01 absolute (floating point may differ across CPUs; on the machine that produced the
reference they match exactly).
"""

import math
import os

import pytest

from configs import churn

from fl_analytics.core import rundir
from fl_analytics.reporting import summary
from fl_analytics.runs import training

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE = os.path.join(REPO, 'results', 'reference')
SHORT_ROUNDS = 5
RUNS = ('mechanism-none_seed-0',
        'mechanism-gaussian_adaptive_target_epsilon-2_seed-0',
        'mechanism-gaussian_fixed_target_epsilon-2_seed-0')
METRIC_ABS_TOL = 0.01


@pytest.mark.slow
@pytest.mark.parametrize('name', RUNS)
def test_short_replay_matches_committed_metrics(tmp_path, name):
  run_dir = os.path.join(REFERENCE, name)
  committed = rundir.read_csv(os.path.join(run_dir, 'metrics.csv'))[:SHORT_ROUNDS]
  config = training.replay_config(rundir.read_json(os.path.join(run_dir, 'config.json')),
                                  churn.get_config(), num_rounds=SHORT_ROUNDS)
  assert SHORT_ROUNDS % config.eval_every == 0
  training.train_and_evaluate(config, str(tmp_path / name))
  replayed = rundir.read_csv(str(tmp_path / name / 'metrics.csv'))
  assert [r['round'] for r in replayed] == [r['round'] for r in committed]
  for new, old in zip(replayed, committed):
    assert new['cohort_size'] == old['cohort_size']
    for key in ('epsilon',):
      a, b = float(new[key]), float(old[key])
      assert (math.isinf(a) and math.isinf(b)) or a == pytest.approx(b, rel=1e-9)
    for key in ('train_loss', 'eval_loss', 'eval_accuracy', 'eval_auc', 'clip'):
      if old[key] == '':
        assert new[key] == ''
      else:
        assert float(new[key]) == pytest.approx(float(old[key]), abs=METRIC_ABS_TOL), key


def test_committed_summary_is_the_summary_of_the_committed_runs():
  committed = rundir.read_csv(os.path.join(REFERENCE, summary.SUMMARY_FILE))
  recomputed = summary.summarize(summary.collect_runs(REFERENCE))
  assert [r['setting'] for r in committed] == [r['setting'] for r in recomputed]
  for old, new in zip(committed, recomputed):
    for key in ('epsilon_mean', 'eval_auc_mean', 'eval_auc_std', 'eval_accuracy_mean'):
      if old[key] in ('', 'inf'):
        assert new[key] is None or math.isinf(new[key])
      else:
        assert float(old[key]) == pytest.approx(new[key], rel=1e-9)
    assert int(old['num_seeds']) == new['num_seeds'] == 3


def test_every_reference_figure_is_committed():
  for fig in ('frontier', 'auc_by_round', 'epsilon_by_round', 'clip_by_round'):
    for fmt in ('png', 'pdf'):
      path = os.path.join(REFERENCE, 'figures', f'{fig}.{fmt}')
      assert os.path.getsize(path) > 1000, path


def test_non_private_reference_beats_base_rate_and_frontier_rises_with_epsilon():
  rows = {r['setting']: r for r in rundir.read_csv(
      os.path.join(REFERENCE, summary.SUMMARY_FILE))}
  none = rows['mechanism-none']
  assert float(none['eval_accuracy_mean']) > 1 - float(none['eval_base_rate_mean'])
  assert float(none['eval_auc_mean']) > 0.8
  auc = [float(rows[f'mechanism-gaussian_adaptive_target_epsilon-{e}']['eval_auc_mean'])
         for e in ('0.5', '2', '8')]
  assert auc[0] < auc[1] < auc[2]


@pytest.mark.parametrize('name', ['scale', 'scale_next_action'])
def test_committed_frontier_summaries_are_the_summaries_of_their_runs(name):
  root = os.path.join(REPO, 'results', name)
  committed = rundir.read_csv(os.path.join(root, summary.SUMMARY_FILE))
  recomputed = summary.summarize(summary.collect_runs(root))
  assert [r['setting'] for r in committed] == [r['setting'] for r in recomputed]
  keys = ('epsilon_mean', 'eval_accuracy_mean', 'eval_loss_mean', 'eval_auc_mean',
          'eval_top3_accuracy_mean', 'eval_bigram_accuracy_mean')
  for old, new in zip(committed, recomputed):
    assert int(old['num_seeds']) == new['num_seeds'] == 2
    for key in keys:
      if old[key] in ('', 'inf', 'nan'):
        assert new[key] is None or not math.isfinite(new[key])
      else:
        assert float(old[key]) == pytest.approx(new[key], rel=1e-9), key
  for fmt in ('png', 'pdf'):
    assert os.path.getsize(os.path.join(root, 'figures', f'population_frontier.{fmt}')) > 1000


def test_next_action_learns_the_calibrated_populations_sequences():
  # Issue 26's bar: non-private, 10 points of top-1 above always predicting the most
  # frequent action at 10^5 users; and the per-user bigram baseline is reported.
  rows = {r['setting']: r for r in rundir.read_csv(
      os.path.join(REPO, 'results', 'scale_next_action', summary.SUMMARY_FILE))}
  none = rows['num_users-100000_clients_per_round-1000_mechanism-none']
  assert float(none['eval_accuracy_mean']) > float(none['eval_majority_accuracy_mean']) + 0.10
  assert 0 < float(none['eval_bigram_accuracy_mean']) < 1
