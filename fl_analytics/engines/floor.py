"""The floor of a DP-FedAvg round: the same work in plain TensorFlow, without TFF.

What `experiments/benchmark.py` compares the pipeline with. It does what one round of
the churn config does, written as an engineer would write it for speed: one
`tf.function` per client step, traced once (its input signature leaves the number of
examples open), run over each client's in-memory arrays; local SGD over the client's
batches for `local_epochs`; the update clipped to the clip norm; the clipped updates
summed; Gaussian noise of stddev `noise_multiplier * clip` added and the sum divided by
the expected cohort; the server's SGD with momentum; and, for adaptive clipping, the
noised count of unclipped updates moving the clip geometrically (Andrew et al. 2021).
It is a yardstick, not a second implementation used for results.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from fl_analytics.tasks import models


class PlainTFRound:
  """One DP-FedAvg round of the churn model in plain TensorFlow."""

  def __init__(self, *, num_features: int, hidden_units: int, seed: int,
               client_learning_rate: float, batch_size: int, local_epochs: int,
               server_learning_rate: float, server_momentum: float,
               noise_multiplier: float, clip: float, clients_per_round: float,
               adaptive: bool, target_unclipped_quantile: float = 0.5,
               clip_learning_rate: float = 0.2):
    self._model = models.build_churn_model(
        num_features=num_features, hidden_units=hidden_units, seed=seed)
    self._weights = [tf.Variable(v) for v in self._model.trainable_variables]
    self._momentum = [tf.Variable(tf.zeros_like(v)) for v in self._weights]
    self._clip = tf.Variable(float(clip))
    self._loss = tf.keras.losses.BinaryCrossentropy(from_logits=True)
    self._rng = tf.random.Generator.from_seed(seed)
    self._lr, self._batch, self._epochs = client_learning_rate, batch_size, local_epochs
    self._server_lr, self._server_momentum = server_learning_rate, server_momentum
    self._z, self._cohort = noise_multiplier, float(clients_per_round)
    self._adaptive, self._quantile = adaptive, target_unclipped_quantile
    self._clip_lr = clip_learning_rate
    spec = [tf.TensorSpec([None, num_features], tf.float32),
            tf.TensorSpec([None, 1], tf.float32)]
    self._total = [tf.Variable(tf.zeros_like(v)) for v in self._weights]
    self._unclipped = tf.Variable(0.0)
    self.client_update = tf.function(self._client_update, input_signature=spec)
    self.accumulate = tf.function(self._accumulate, input_signature=spec)

  @property
  def trace_count(self) -> int:
    """Traces of the per-client function the round calls."""
    return self.accumulate.experimental_get_tracing_count()

  def _client_update(self, x, y):
    for local, global_ in zip(self._model.trainable_variables, self._weights):
      local.assign(global_)
    n = tf.shape(x)[0]
    num_batches = (n + self._batch - 1) // self._batch
    for _ in tf.range(self._epochs * num_batches):
      start = (_ % num_batches) * self._batch
      xb, yb = x[start:start + self._batch], y[start:start + self._batch]
      with tf.GradientTape() as tape:
        loss = self._loss(yb, self._model(xb, training=True))
      grads = tape.gradient(loss, self._model.trainable_variables)
      for v, g in zip(self._model.trainable_variables, grads):
        v.assign_sub(self._lr * g)
    delta = [g - l for l, g in zip(self._model.trainable_variables, self._weights)]
    norm = tf.linalg.global_norm(delta)
    clipped, _ = tf.clip_by_global_norm(delta, self._clip, use_norm=norm)
    return clipped, tf.cast(norm <= self._clip, tf.float32)

  def _accumulate(self, x, y):
    # The sum stays in variables: one call per client, no eager op in between.
    clipped, below = self._client_update(x, y)
    for t, c in zip(self._total, clipped):
      t.assign_add(c)
    self._unclipped.assign_add(below)

  def run_round(self, client_data) -> None:
    for t in self._total:
      t.assign(tf.zeros_like(t))
    self._unclipped.assign(0.0)
    for x, y in client_data:
      self.accumulate(x, y)
    total, unclipped = self._total, self._unclipped
    # As TFF's adaptive factory, the noise multiplier is split between the update and
    # the count; the floor only needs the same amount of work, not that arithmetic.
    stddev = self._z * self._clip
    mean = [(t + self._rng.normal(tf.shape(t), stddev=stddev)) / self._cohort
            for t in total]
    for w, m, u in zip(self._weights, self._momentum, mean):
      m.assign(self._server_momentum * m + u)
      w.assign_sub(-self._server_lr * m)
    if self._adaptive:
      noised = (unclipped + self._rng.normal([], stddev=self._z)) / self._cohort
      self._clip.assign(self._clip * tf.exp(-self._clip_lr * (noised - self._quantile)))


def floor_round_seconds(rounds, client_data_per_round, **kwargs) -> tuple[float, int]:
  """Median seconds per round after one warm-up round, and the trace count."""
  import time  # pylint: disable=g-import-not-at-top

  floor = PlainTFRound(**kwargs)
  floor.run_round(client_data_per_round[0])
  seconds = []
  for data in client_data_per_round[1:rounds + 1]:
    t0 = time.monotonic()
    floor.run_round(data)
    seconds.append(time.monotonic() - t0)
  return float(np.median(seconds)), floor.trace_count
