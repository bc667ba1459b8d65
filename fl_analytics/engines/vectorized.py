"""The ``vectorized`` engine: a round's local training as one computation over the cohort.

The round is still the one TFF builds (`build_unweighted_fed_avg` with the run's
aggregator), run from its MapReduceForm as the `mapreduce` engine runs it
(`fl_analytics.engines.mrf_runner`): `prepare`, the aggregation's `zero`, `report` and the
server `update` are TFF's own graphs. What changes is the clients' part: instead of
TFF's client graph (`work` fused with `accumulate`) called once per client, every
client's local SGD runs at once, with the clients' weights stacked on a leading axis
and the clients padded and masked to a common number of steps (as vectorized simulators
such as FedJAX map over clients), and the clients' contributions are summed into the
accumulator TFF's `report` reads.

That is a second implementation of TFF's client work, so it runs only what it was
checked against (`tests/vectorized_test.py`, to float tolerance against the
`mapreduce` engine's round): the churn MLP, unweighted FedAvg with plain local SGD, and
the aggregators whose client work is the model delta itself (`none`), the delta clipped
to an L2 norm (`gaussian_fixed`), or that and the norm compared with adaptive
clipping's current estimate (`gaussian_adaptive`, Andrew et al. 2021). The client work TFF would run is read off the
accumulator's type (the metric sums by name, the model's tensors by shape, the client
count); anything else in it, another task or mechanism, compression, secure sums and
audit canaries are refused by name (`engines.VectorizedEngine.check`) before a run
starts.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff
from tensorflow_federated.python.common_libs import structure

from fl_analytics.engines import mrf_runner

def _leaves(type_spec, path=()) -> list[tuple[tuple, Any]]:
  """(path of names and positions, tensor type) of every leaf of a TFF type, in order."""
  if isinstance(type_spec, tff.TensorType):
    return [(path, type_spec)]
  out = []
  for i, (name, element) in enumerate(structure.iter_elements(type_spec)):
    out += _leaves(element, path + (name if name else i,))
  return out


class VectorizedRunner(mrf_runner.MapReduceRunner):
  """`MapReduceRunner` whose clients train in one stacked computation."""

  _CLIENT_STEPS = False

  def __init__(self, process, dataset_fn, *, learning_rate: float, batch_size: int,
               local_epochs: int, clip: Optional[float], groups: int = 1):
    """`clip`: the L2 clip of each update (None: not clipped). Where `prepare`
    broadcasts the clip (adaptive clipping, whose clip moves), that one is used.
    `groups`: the cohort is trained in that many shards (client k in shard
    k % groups), one after another, their sums merged in order."""
    super().__init__(process, dataset_fn, groups=groups, parallel=1)
    self._lr, self._batch, self._epochs, self._clip = (
        float(learning_rate), int(batch_size), int(local_epochs), clip)
    acc_type = self._mrf.accumulate.type_signature.result
    self._layout = []
    shapes = []
    for path, t in _leaves(acc_type):
      names = [p for p in path if isinstance(p, str)]
      if 'binary_accuracy' in names or 'loss' in names:
        self._layout.append((names[-1] + ('_total' if path[-1] == 0 else '_count'), t))
      elif names and names[-1] in ('num_examples', 'num_batches'):
        self._layout.append((names[-1], t))
      elif len(t.shape) == 0 and np.dtype(t.dtype) == np.int32:
        self._layout.append(('clients', t))
      elif names and names[-1] == 'quantile_estimator_state':
        self._layout.append(('below_estimate', t))
      elif np.dtype(t.dtype) == np.float32 and len(t.shape) in (1, 2):
        self._layout.append((f'delta_{len(shapes)}', t))
        shapes.append(tuple(t.shape))
      else:
        raise ValueError(f'runtime.engine=vectorized does not know the client work that '
                         f'produces {path} ({t}); use runtime.engine=mapreduce.')
    if len(shapes) != 4 or len(shapes[0]) != 2:
      raise ValueError('runtime.engine=vectorized runs a one-hidden-layer MLP; the '
                       f'aggregated tensors are {shapes}. Use runtime.engine=mapreduce.')
    self._shapes = shapes
    # Where `prepare` puts the clip of the sum query and adaptive clipping's current
    # estimate (what a client compares its update's norm with), if it has them.
    self._broadcast_index = {}
    for k, (path, _) in enumerate(_leaves(self._mrf.prepare.type_signature.result)):
      for name in ('sum_params', 'current_estimate'):
        if name in path:
          self._broadcast_index[name] = k
    self._train = tf.function(self._train_cohort, reduce_retracing=True)

  def _weights(self, broadcast: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The global model's trainable tensors in what `prepare` sends the clients."""
    for start in range(len(broadcast) - 3):
      if all(np.shape(broadcast[start + k]) == self._shapes[k] for k in range(4)):
        return list(broadcast[start:start + 4])
    raise ValueError('runtime.engine=vectorized found no model weights in the broadcast.')

  def _train_cohort(self, w1, b1, w2, b2, x, y, mask, steps):
    """Local SGD of every client at once.

    x [C, S, B, F], y and mask [C, S, B]: each client's batches, padded with masked
    examples (a client's last batch may be partial) and masked steps (`steps` [C]).
    Returns the stacked deltas (initial minus final), zeroed where not finite, and the
    per-client metric sums.
    """
    cohort = tf.shape(x)[0]
    weights = [tf.tile(v[None], [cohort] + [1] * len(v.shape)) for v in (w1, b1, w2, b2)]
    initial = list(weights)
    loss_sum = tf.zeros([cohort])
    correct = tf.zeros([cohort])
    for s in tf.range(tf.shape(x)[1]):
      xs, ys, ms = x[:, s], y[:, s], mask[:, s]
      n = tf.reduce_sum(ms, axis=1)  # examples in this step's batch, per client
      with tf.GradientTape() as tape:
        tape.watch(weights)
        hidden = tf.nn.relu(tf.einsum('cbf,cfh->cbh', xs, weights[0]) + weights[1][:, None])
        logits = tf.einsum('cbh,cho->cbo', hidden, weights[2])[..., 0] + weights[3]
        losses = tf.nn.sigmoid_cross_entropy_with_logits(labels=ys, logits=logits) * ms
        batch_loss = tf.math.divide_no_nan(tf.reduce_sum(losses, axis=1), n)
        total = tf.reduce_sum(batch_loss)
      grads = tape.gradient(total, weights)
      active = tf.cast(s < steps, tf.float32)
      weights = [w - self._lr * g * tf.reshape(active, [-1] + [1] * (len(w.shape) - 1))
                 for w, g in zip(weights, grads)]
      loss_sum += batch_loss * n * active
      correct += tf.reduce_sum(tf.cast(tf.equal(tf.cast(logits > 0, tf.float32), ys),
                                       tf.float32) * ms, axis=1) * active
    deltas = [a - b for a, b in zip(initial, weights)]
    finite = tf.reduce_all(tf.stack([
        tf.reduce_all(tf.math.is_finite(tf.reshape(d, [cohort, -1])), axis=1)
        for d in deltas]), axis=0)
    deltas = [tf.where(tf.reshape(finite, [-1] + [1] * (len(d.shape) - 1)), d,
                       tf.zeros_like(d)) for d in deltas]
    return deltas, loss_sum, correct

  def _batches(self, client_data):
    """The padded batches of every client, as `dataset_fn` would cut them:
    `local_epochs` passes over the examples, then batches of `batch_size` (the last
    partial), then the first `max_steps`."""
    streams = []
    for x, y, *max_steps in client_data:
      n = len(y) * self._epochs
      steps = -(-n // self._batch)
      if max_steps and max_steps[0] >= 0:
        steps = min(steps, int(max_steps[0]))
      streams.append((np.tile(x, (self._epochs, 1)), np.tile(y[:, 0], self._epochs), steps))
    cohort, features = len(streams), self._shapes[0][0]
    most = max([s for _, _, s in streams] + [1])
    x = np.zeros((cohort, most * self._batch, features), np.float32)
    y = np.zeros((cohort, most * self._batch), np.float32)
    mask = np.zeros((cohort, most * self._batch), np.float32)
    steps = np.zeros(cohort, np.int32)
    for c, (xc, yc, sc) in enumerate(streams):
      k = min(len(yc), sc * self._batch)
      x[c, :k], y[c, :k], mask[c, :k], steps[c] = xc[:k], yc[:k], 1.0, sc
    shape = (cohort, most, self._batch)
    return (x.reshape(shape + (features,)), y.reshape(shape), mask.reshape(shape), steps)

  def accumulate_group(self, broadcast, acc, secure_params, client_data, g: int = 0):
    del secure_params, g  # the refused configurations are the ones with secure sums
    if not client_data:
      return acc, [[], [], []]
    w = self._weights(broadcast)
    x, y, mask, steps = self._batches(client_data)
    deltas, loss_sum, correct = self._train(*w, x, y, mask, steps)
    deltas, loss_sum, correct = [d.numpy() for d in deltas], loss_sum.numpy(), correct.numpy()
    below = np.zeros(len(client_data), np.float32)
    if self._clip is not None:  # TF Privacy's clip_by_global_norm, per client
      clip = np.float32(broadcast[self._broadcast_index['sum_params']]
                        if 'sum_params' in self._broadcast_index else self._clip)
      norms = np.sqrt(sum(np.sum(np.square(d.reshape(len(d), -1), dtype=np.float32),
                                 axis=1) for d in deltas))
      scale = clip / np.maximum(norms, clip)
      deltas = [d * scale.reshape((-1,) + (1,) * (d.ndim - 1)) for d in deltas]
      if 'current_estimate' in self._broadcast_index:
        # Adaptive clipping (Andrew et al. 2021), TF Privacy's QuantileEstimatorQuery:
        # each client reports whether its unclipped norm is at most the estimate, minus
        # 0.5 (so that the record's sensitivity is 0.5).
        estimate = np.float32(broadcast[self._broadcast_index['current_estimate']])
        below = (norms <= estimate).astype(np.float32) - np.float32(0.5)
    sums = {'clients': len(client_data), 'num_examples': int(mask.sum()),
            'num_batches': int(steps.sum()), 'loss_total': float(loss_sum.sum()),
            'loss_count': float(mask.sum()), 'binary_accuracy_total': float(correct.sum()),
            'binary_accuracy_count': float(mask.sum()),
            'below_estimate': float(below.sum()),
            **{f'delta_{k}': d.sum(axis=0) for k, d in enumerate(deltas)}}
    out = [np.asarray(a) + np.asarray(sums[name], dtype=np.dtype(t.dtype))
           for a, (name, t) in zip(acc, self._layout)]
    return out, [[], [], []]
