"""Poisson sampling, the AUC and the run-directory files."""

import errno
import os

import numpy as np
import pytest

from fl_analytics.tasks import metrics
from fl_analytics.core import rundir
from fl_analytics.privacy import sampling


def test_poisson_cohort_is_seeded_per_round():
  a = sampling.poisson_cohort(population_size=500, sampling_probability=0.1, seed=1,
                              round_num=7)
  b = sampling.poisson_cohort(population_size=500, sampling_probability=0.1, seed=1,
                              round_num=7)
  c = sampling.poisson_cohort(population_size=500, sampling_probability=0.1, seed=1,
                              round_num=8)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


def test_poisson_cohort_size_has_binomial_mean_and_variance():
  sizes = np.array([len(sampling.poisson_cohort(
      population_size=400, sampling_probability=0.05, seed=0, round_num=r))
                    for r in range(1, 2001)])
  assert sizes.mean() == pytest.approx(20, abs=0.5)
  assert sizes.var() == pytest.approx(400 * 0.05 * 0.95, rel=0.15)


def test_fixed_size_cohort_has_exactly_the_cohort_size():
  for r in range(1, 20):
    c = sampling.fixed_size_cohort(population_size=100, cohort_size=7, seed=0,
                                   round_num=r)
    assert len(c) == len(set(c.tolist())) == 7


def test_shuffle_takes_each_user_once_per_pass_one_pass_apart():
  n, m = 103, 10  # passes of 10 rounds; 3 users never take part
  seen = {}
  for r in range(1, 31):
    for user in sampling.shuffle_cohort(population_size=n, cohort_size=m, seed=4,
                                        round_num=r):
      seen.setdefault(int(user), []).append(r)
  assert len(seen) == 100
  for rounds in seen.values():
    assert len(rounds) == 3 and np.all(np.diff(rounds) == 10)


def test_auc_matches_pairwise_definition_with_ties():
  rng = np.random.default_rng(0)
  labels = rng.random(200) < 0.3
  logits = np.round(rng.normal(size=200) + labels, 1)  # rounding makes ties
  pos, neg = logits[labels], logits[~labels]
  pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
  got = metrics.binary_metrics(logits, labels)
  assert got['auc'] == pytest.approx(pairs)
  assert got['base_rate'] == pytest.approx(labels.mean())


def test_loss_and_accuracy_of_known_logits():
  got = metrics.binary_metrics(np.array([0.0, 2.0, -2.0]), np.array([1, 1, 0]))
  expected_loss = (np.log(2) + np.log1p(np.exp(-2)) * 2) / 3
  assert got['loss'] == pytest.approx(expected_loss)
  assert got['accuracy'] == pytest.approx(2 / 3)  # logit 0 predicts "no churn"


def test_atomic_write_replaces_and_leaves_no_temporary_file(tmp_path):
  path = tmp_path / 'a.json'
  rundir.write_json(str(path), {'x': 1})
  rundir.write_json(str(path), {'x': 2})
  assert rundir.read_json(str(path)) == {'x': 2}
  assert os.listdir(tmp_path) == ['a.json']


def test_a_full_disk_keeps_the_old_file_and_names_the_one_not_written(tmp_path,
                                                                        monkeypatch):
  path = tmp_path / 'metrics.csv'
  rundir.write_csv(str(path), ['round'], [{'round': 1}])

  def full(fd):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

  monkeypatch.setattr(os, 'fsync', full)
  with pytest.raises(OSError) as raised:
    rundir.write_csv(str(path), ['round'], [{'round': 1}, {'round': 2}])
  assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(path)
  assert rundir.read_csv(str(path)) == [{'round': '1'}]
  assert os.listdir(tmp_path) == ['metrics.csv']


def test_failed_write_keeps_the_old_file(tmp_path):
  path = tmp_path / 'a.json'
  rundir.write_json(str(path), {'x': 1})
  with pytest.raises(ValueError):
    rundir.write_json(str(path), {'x': float('nan')})  # NaN is not valid JSON
  assert rundir.read_json(str(path)) == {'x': 1}
  assert os.listdir(tmp_path) == ['a.json']


def test_checkpoint_round_trip_keeps_arrays_scalars_and_bytes(tmp_path):
  leaves = [np.arange(6, dtype=np.float32).reshape(2, 3), np.float32(0.5),
            b'dp_accounting.dp_event', np.bool_(True), np.int64(3)]
  for r in (1, 2, 3):
    rundir.save_checkpoint(str(tmp_path), r, leaves, keep=2)
  assert rundir.latest_checkpoint_round(str(tmp_path)) == 3
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == [
      'round_000002.npz', 'round_000003.npz']
  back = rundir.load_checkpoint(str(tmp_path), 3)
  np.testing.assert_array_equal(back[0], leaves[0])
  assert back[1] == np.float32(0.5) and back[1].dtype == np.float32
  assert back[2] == b'dp_accounting.dp_event' and isinstance(back[2], bytes)
  assert back[3] and back[4] == 3


def test_csv_round_trip_writes_inf_and_empty_cells(tmp_path):
  path = str(tmp_path / 'm.csv')
  rundir.write_csv(path, ['round', 'epsilon', 'eval_auc'],
                   [{'round': 1, 'epsilon': float('inf')}, {'round': 2, 'epsilon': 1.5,
                                                             'eval_auc': 0.7}])
  rows = rundir.read_csv(path)
  assert rows[0] == {'round': '1', 'epsilon': 'inf', 'eval_auc': ''}
  assert rundir.to_float(rows[1]['eval_auc']) == 0.7


def test_config_differences_ignore_listed_keys():
  a = {'num_rounds': 5, 'dp': {'clip': 1.0}, 'runtime': {'x': 1}}
  b = {'num_rounds': 9, 'dp': {'clip': 2.0}, 'runtime': {'x': 2}}
  assert rundir.config_differences(a, b, ignore=('num_rounds', 'runtime')) == [
      'dp.clip: run has 1.0, command has 2.0']


def test_multiclass_metrics_of_known_logits():
  logits = np.log(np.array([[0.6, 0.3, 0.1, 0.0 + 1e-9],
                            [0.1, 0.2, 0.3, 0.4],
                            [0.25, 0.25, 0.25, 0.25]]))
  m = metrics.multiclass_metrics(logits, np.array([[0], [0], [3]]), top_k=3)
  assert m['loss'] == pytest.approx(-(np.log(0.6) + np.log(0.1) + np.log(0.25)) / 3)
  # Row 3 is a four-way tie: class 3 is last by index, outside the top 3.
  assert m['accuracy'] == pytest.approx(1 / 3)
  assert m['top3_accuracy'] == pytest.approx(1 / 3)
  assert m['majority_accuracy'] == pytest.approx(2 / 3)  # label 0, twice of three
