"""The DP query of the matrix-factorization mechanisms: a clipped sum plus correlated
noise, generated in bounded memory (TF Privacy's `DPQuery` interface, so TFF's
`DifferentiallyPrivateFactory` runs it like its own queries).

Round t adds w_t, the t-th entry of C^{-1} z for i.i.d. Gaussian z of stddev `stddev`
(`noise_multiplier * clip * sens(C)`), by solving C w = z forward, one round at a time:

* banded Toeplitz C with coefficients c_0..c_{m-1}: w_t = (z_t - sum_{j>=1} c_j
  w_{t-j}) / c_0, which keeps the last m - 1 noise vectors;
* BLT C (c_0 = 1, c_t = sum_i omega_i theta_i^(t-1)): w_t = z_t - sum_i omega_i s_i,
  then s_i <- theta_i s_i + w_t, one buffer s_i per theta_i (Dvijotham et al. 2024).

The state (the buffers, the noise key, the round) is part of the aggregator's state, so
it is checkpointed with the run. z is drawn with `tf.random.stateless_normal` keyed by
(seed, round, tensor): reproducible from `seed`, which a run takes from its config
(`dp.reproducible_noise`, simulation) or from the OS.
"""

from __future__ import annotations

import collections

import dp_accounting
import numpy as np
import tensorflow as tf
import tensorflow_privacy as tfp

from fl_analytics.privacy import matrix_factorization as mf

State = collections.namedtuple('State', ['l2_norm_clip', 'stddev', 'buffers', 'seed',
                                         'round'])


def _depth(strategy: mf.Strategy) -> int:
  """Vectors of noise state per model tensor."""
  return len(strategy.buf_decay) if strategy.kind == 'blt' else len(strategy.coefs) - 1


class CorrelatedNoiseSumQuery(tfp.SumAggregationDPQuery):
  """Sum of records clipped to `l2_norm_clip` (global L2 norm), plus round t's entry of
  C^{-1} z for the `strategy` C (`fl_analytics.privacy.matrix_factorization.Strategy`)."""

  def __init__(self, l2_norm_clip: float, stddev: float, strategy: mf.Strategy,
               record_specs, seed: int):
    self._clip = float(l2_norm_clip)
    self._stddev = float(stddev)
    self._strategy = strategy
    self._specs = record_specs
    self._seed = int(seed)

  def initial_global_state(self):
    depth = _depth(self._strategy)
    buffers = tf.nest.map_structure(
        lambda s: tf.zeros([depth, *s.shape], s.dtype), self._specs)
    return State(tf.constant(self._clip, tf.float32),
                 tf.constant(self._stddev, tf.float32), buffers,
                 tf.constant([self._seed, 0xC0FFEE], tf.int64), tf.constant(0, tf.int64))

  def derive_sample_params(self, global_state):
    return global_state.l2_norm_clip

  def preprocess_record(self, params, record):
    flat = tf.nest.flatten(record)
    clipped, _ = tf.clip_by_global_norm(flat, params)
    return tf.nest.pack_sequence_as(record, clipped)

  def _next(self, z, buffer):
    """(w_t, the buffer after round t) for one tensor."""
    s = self._strategy
    if s.kind == 'blt':
      theta = tf.constant(s.buf_decay, buffer.dtype)
      omega = tf.constant(s.output_scale, buffer.dtype)
      w = z - tf.tensordot(omega, buffer, axes=1)
      shape = [-1] + [1] * (len(buffer.shape) - 1)
      return w, tf.reshape(theta, shape) * buffer + w[tf.newaxis]
    coefs = np.asarray(s.coefs, np.float64)
    if len(coefs) == 1:  # one band: independent noise, nothing to keep
      return z / coefs[0], buffer
    w = (z - tf.tensordot(tf.constant(coefs[1:], buffer.dtype), buffer, axes=1)) / coefs[0]
    return w, tf.concat([w[tf.newaxis], buffer[:-1]], axis=0)

  def get_noised_result(self, sample_state, global_state):
    key = tf.random.experimental.stateless_fold_in(global_state.seed, global_state.round)
    flat_sum = tf.nest.flatten(sample_state)
    flat_buffers = tf.nest.flatten(global_state.buffers)
    results, buffers = [], []
    for i, (total, buffer) in enumerate(zip(flat_sum, flat_buffers)):
      z = tf.random.stateless_normal(
          tf.shape(total), seed=tf.random.experimental.stateless_fold_in(key, i),
          stddev=global_state.stddev, dtype=total.dtype)
      w, buffer = self._next(z, buffer)
      results.append(total + w)
      buffers.append(buffer)
    state = global_state._replace(
        buffers=tf.nest.pack_sequence_as(global_state.buffers, buffers),
        round=global_state.round + 1)
    return (tf.nest.pack_sequence_as(sample_state, results), state,
            dp_accounting.UnsupportedDpEvent())

  def derive_metrics(self, global_state):
    return collections.OrderedDict(clip=global_state.l2_norm_clip)
