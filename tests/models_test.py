"""The churn model's tensor sizes, which the secure-sum and compression accounting rely on."""

import pytest

from fl_analytics.tasks import models


@pytest.mark.parametrize('hidden_units', [0, 1, 32])
def test_churn_tensor_sizes_equal_keras_weights(hidden_units):
  model = models.build_churn_model(num_features=7, hidden_units=hidden_units, seed=0)
  assert models.churn_tensor_sizes(num_features=7, hidden_units=hidden_units) == [
      int(v.shape.num_elements()) for v in model.trainable_variables]
  assert models.churn_num_parameters(
      num_features=7, hidden_units=hidden_units) == model.count_params()


def test_next_action_tensor_sizes_equal_keras_weights():
  kw = dict(vocab_size=10, context=6, embedding_dim=4, filters=5, kernel_size=3)
  model = models.build_next_action_model(**kw, seed=0)
  assert models.next_action_tensor_sizes(**kw) == [
      int(v.shape.num_elements()) for v in model.trainable_variables]
  assert model.output_shape == (None, 10)
