"""The next-action GRU over actions and their time gaps: its gap buckets, its settings
and its TFLite export (its examples, model and device spec: tests/contracts_test.py)."""

import numpy as np
import pytest

from fl_analytics import tasks
from fl_analytics.data import features
from fl_analytics.data import synthetic
from fl_analytics.tasks import models
from tests.contracts_test import VARIANTS
from tests.contracts_test import task_config

T0 = synthetic.ORIGIN_TIMESTAMP
# The GRU variant of the contract tests (which check its examples, model and device
# spec), on the second behaviour model.
GRU = {**VARIANTS['next_action']['gru'], 'data.generator': 'app_paths'}


def test_context_gaps_are_bucketed_seconds_since_the_action_before():
  # Session 1 at T0 + 100: gaps of 1, 3, 50 and 400 s; session 2 two hours later.
  ts = np.array([100, 101, 104, 154, 554, 7754, 7756]) + T0
  ev = np.array([0, 1, 2, 3, 4, 0, 5])
  x, y = features.next_action_examples(ts, ev, origin_timestamp=T0, num_days=30,
                                       context=3, max_examples=10, pad_action=9,
                                       with_gaps=True)
  assert x.shape == (5, 3, 2) and y.tolist() == [1, 2, 3, 4, 5]
  start, pad = features.GAP_SESSION_START, features.GAP_PAD
  # edges 2, 5, 10, 20, 40, 80, 160, 320: 1 s -> 0, 3 s -> 1, 50 s -> 5, 400 s -> 8
  assert x[3].tolist() == [[1, 0], [2, 1], [3, 5]]  # predicting 4: the gaps before 1, 2, 3
  assert x[0].tolist() == [[9, pad], [9, pad], [0, start]]
  assert x[4].tolist() == [[9, pad], [9, pad], [0, start]]  # a new session
  plain, _ = features.next_action_examples(ts, ev, origin_timestamp=T0, num_days=30,
                                           context=3, max_examples=10, pad_action=9)
  np.testing.assert_array_equal(plain, x[..., 0])


@pytest.mark.parametrize('overrides, message', [
    ({'model.architecture': 'gru'}, r'gru reads the time gaps'),
    ({'data.context_gaps': True}, r'conv model only the actions'),
    ({'model.architecture': 'lstm'}, r'model.architecture must be one of conv, gru'),
    ({**GRU, 'model.gru_units': 0}, r'model.gru_units must be a positive integer'),
])
def test_inconsistent_sequence_settings_are_refused_by_name(overrides, message):
  with pytest.raises(ValueError, match=message):
    tasks.get('next_action').check_config(task_config('next_action', **overrides))


def test_the_default_gru_is_in_the_issue_s_parameter_range():
  sizes = models.next_action_gru_tensor_sizes(
      vocab_size=59, context=8, embedding_dim=64, units=256,
      num_gap_tokens=features.NUM_GAP_TOKENS)
  assert 10**5 <= sum(sizes) <= 10**6


@pytest.mark.slow
def test_the_gru_exports_to_builtin_tflite_with_parity(tmp_path):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from fl_analytics.export import tflite  # pylint: disable=g-import-not-at-top

  task = tasks.get('next_action')
  config = task_config('next_action', **GRU)
  model = task.build_model(config)
  module = tflite.device_module(task, config, model)
  saved = str(tmp_path / 'saved')
  tf.saved_model.save(module, saved, signatures={
      'infer': module.infer.get_concrete_function()})
  converted = tflite._convert(saved, ['infer'])  # pylint: disable=protected-access
  data = task.build_data(config)
  x = np.concatenate([x for x, _ in data.train_examples_many(list(range(40)))])[:200]
  got = tflite.tflite_outputs(converted, x)['probabilities']
  want = tf.nn.softmax(model(x, training=False)).numpy()
  assert np.abs(got - want).max() <= 1e-5
