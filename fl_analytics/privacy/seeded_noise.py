"""Reproducible Gaussian noise for TF Privacy's DP queries (simulation only).

TF Privacy 0.9.0's `GaussianSumQuery.get_noised_result` draws its noise with an
unseeded `tf.random_normal_initializer`; inside TFF's worker that noise comes from OS
entropy, so two runs of the same config differ and a resumed run cannot repeat the run
it continues. `SeededNoiseQuery` wraps any `tfp.SumAggregationDPQuery` (fixed or
adaptive clipping, including the clipped-count noise of Andrew et al. 2021) and makes
every Gaussian draw a counter-based `tf.random.stateless_normal`:

  draw seed = fold_in(fold_in(base seed, round), k)

for the k-th tensor noised in a round. Draws are independent across tensors and rounds
(Philox streams of distinct keys), so the mechanism and its accounting are unchanged;
the round counter lives in the aggregator state and is checkpointed with it.

Deterministic noise is for simulation: anyone who knows the seed can subtract the
noise. Set `dp.reproducible_noise=False` to keep TF Privacy's own unseeded noise.

It works by standing in for the `tf` module of
`tensorflow_privacy.privacy.dp_query.gaussian_query` while `get_noised_result` is
traced (TF Privacy has no seed argument to pass instead); `seeded_noise_test` checks
that the draws repeat, differ between rounds and tensors, and have the configured
standard deviation.
"""

from __future__ import annotations

import collections
import contextlib

import tensorflow as tf
import tensorflow_privacy as tfp
from tensorflow_privacy.privacy.dp_query import gaussian_query

SeededState = collections.namedtuple('SeededState', ['inner', 'seed', 'round'])


class _SeededTF:
  """The `tf` module, except that random_normal_initializer is stateless and keyed."""

  def __init__(self, seed: tf.Tensor):
    self._seed = seed
    self._draws = 0

  def __getattr__(self, name):
    return getattr(tf, name)

  def random_normal_initializer(self, mean=0.0, stddev=1.0, seed=None):
    del seed

    def draw(shape, dtype=tf.float32):
      key = tf.random.experimental.stateless_fold_in(self._seed, self._draws)
      self._draws += 1
      return tf.random.stateless_normal(
          shape, seed=key, mean=mean, stddev=stddev, dtype=dtype)

    return draw


@contextlib.contextmanager
def _keyed_gaussian_noise(seed: tf.Tensor):
  original = gaussian_query.tf
  gaussian_query.tf = _SeededTF(seed)
  try:
    yield
  finally:
    gaussian_query.tf = original


class SeededNoiseQuery(tfp.SumAggregationDPQuery):
  """Delegates to `inner`; its Gaussian noise is keyed by (seed, round, draw)."""

  def __init__(self, inner: tfp.SumAggregationDPQuery, seed: int):
    if not isinstance(inner, tfp.SumAggregationDPQuery):
      raise TypeError(f'inner must be a SumAggregationDPQuery. Found {type(inner)}.')
    self._inner = inner
    self._seed = int(seed)

  def initial_global_state(self):
    return SeededState(
        self._inner.initial_global_state(),
        tf.constant([self._seed, 0x5EEDED], tf.int64),
        tf.constant(0, tf.int64),
    )

  def derive_sample_params(self, global_state):
    return self._inner.derive_sample_params(global_state.inner)

  def initial_sample_state(self, template=None):
    return self._inner.initial_sample_state(template)

  def preprocess_record(self, params, record):
    return self._inner.preprocess_record(params, record)

  def accumulate_preprocessed_record(self, sample_state, preprocessed_record):
    return self._inner.accumulate_preprocessed_record(sample_state, preprocessed_record)

  def merge_sample_states(self, sample_state_1, sample_state_2):
    return self._inner.merge_sample_states(sample_state_1, sample_state_2)

  def get_noised_result(self, sample_state, global_state):
    round_seed = tf.random.experimental.stateless_fold_in(
        global_state.seed, global_state.round)
    with _keyed_gaussian_noise(round_seed):
      result, inner_state, event = self._inner.get_noised_result(
          sample_state, global_state.inner)
    new_state = SeededState(inner_state, global_state.seed, global_state.round + 1)
    return result, new_state, event

  def derive_metrics(self, global_state):
    return self._inner.derive_metrics(global_state.inner)
