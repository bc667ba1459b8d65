"""The churn model's parameter count, which the secure-sum accounting relies on."""

import pytest

from fl_analytics import models


@pytest.mark.parametrize('hidden_units', [0, 1, 32])
def test_churn_num_parameters_equals_keras_count(hidden_units):
  model = models.build_churn_model(num_features=7, hidden_units=hidden_units, seed=0)
  assert models.churn_num_parameters(
      num_features=7, hidden_units=hidden_units) == model.count_params()
