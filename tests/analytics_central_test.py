"""The central library the federated releases are compared with (PipelineDP): its count
noise is the Gaussian our calibration gives for the same epsilon, delta and bound, so
their ratio of errors on counts is 1 (docs/analytics.md)."""

import numpy as np
import pytest

from fl_analytics.analytics import central
from fl_analytics.analytics import release


def test_pipeline_dp_counts_have_the_noise_of_our_calibration():
  rng = np.random.default_rng(0)
  vectors = (rng.random((40, 3)) < 0.5).astype(np.float32)  # 3 partitions, L0 = 3
  truth = vectors.sum(axis=0)
  noise = np.concatenate([
      central.vector_counts(vectors, epsilon=1.0, delta=1e-5, l0=3) - truth
      for _ in range(150)])
  ours = release.noise_multiplier_for(1.0, delta=1e-5) * np.sqrt(3)
  # 450 draws: the sample stddev is within 4 of its standard errors (about 13 %).
  assert noise.std() == pytest.approx(ours, rel=4 / np.sqrt(2 * noise.size))
