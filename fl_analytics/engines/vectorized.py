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

The clients' local training is the task's own Keras model, trained for a stack of
clients at once (`fl_analytics.engines.stacked`): the clients sorted by their number of
steps, in chunks sized to `runtime.vectorized_memory_mb` whose sums are added in order.

That is a second implementation of TFF's client work, so it runs only what it was
checked against (`tests/vectorized_test.py`, every accumulator leaf to float tolerance
against the `mapreduce` engine's round, for every task and model): unweighted FedAvg with
plain local SGD, and the aggregators whose client work is the model delta itself
(`none`), the delta clipped to an L2 norm (`gaussian_fixed`; `tree`, whose noise is
added on the server), or that and the norm compared with adaptive clipping's current
estimate (`gaussian_adaptive`, Andrew et al. 2021); audit canaries, whose update is
their direction (`fl_analytics.privacy.canaries`). The client work TFF would run is
read off the accumulator's type (the metric sums by name, the model's tensors by
shape, the client count); anything else in it fails before the first round, and what
is known not to run here (compression, secure sums) is refused by name
(`engines.VectorizedEngine.check`) before a run starts.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff
from tensorflow_federated.python.common_libs import structure

from fl_analytics.engines import mrf_runner
from fl_analytics.engines import stacked
from fl_analytics.privacy import canaries

def _leaves(type_spec, path=()) -> list[tuple[tuple, Any]]:
  """(path of names and positions, tensor type) of every leaf of a TFF type, in order."""
  if isinstance(type_spec, tff.TensorType):
    return [(path, type_spec)]
  out = []
  for i, (name, element) in enumerate(structure.iter_elements(type_spec)):
    out += _leaves(element, path + (name if name else i,))
  return out


class VectorizedRunner(mrf_runner.MapReduceRunner):
  """`MapReduceRunner` whose clients train in stacked computations (`stacked`)."""

  _CLIENT_STEPS = False

  def __init__(self, process, dataset_fn, *, model: stacked.StackedModel,
               learning_rate: float, batch_size: int, local_epochs: int,
               clip: Optional[float], groups: int = 1, memory_mb: float = 1024.0,
               canary_seed: Optional[int] = None):
    """`model`: the task's model, loss and metrics (what TFF's client work trains).
    `clip`: the L2 clip of each update (None: not clipped); where `prepare` broadcasts
    the clip (adaptive clipping, whose clip moves), that one is used. `groups`: the
    cohort is trained in that many shards (client k in shard k % groups), one after
    another, their sums merged in order. `memory_mb`: each shard is trained in chunks
    of consecutive clients sized to that much engine memory (`stacked.chunk_size`),
    their sums added in order. `canary_seed`: the run's seed, with audit canaries
    (`fl_analytics.privacy.canaries`; their updates are their directions)."""
    super().__init__(process, dataset_fn, groups=groups, parallel=1)
    self._model = model
    self._lr, self._batch, self._epochs, self._clip = (
        float(learning_rate), int(batch_size), int(local_epochs), clip)
    self._memory_mb, self._canary_seed = float(memory_mb), canary_seed
    self._layout = _layout(self._mrf.accumulate.type_signature.result, model)
    # Where `prepare` puts the clip of the sum query and adaptive clipping's current
    # estimate (what a client compares its update's norm with), if it has them.
    self._broadcast_index = {}
    for k, (path, _) in enumerate(_leaves(self._mrf.prepare.type_signature.result)):
      for name in ('sum_params', 'current_estimate'):
        if name in path:
          self._broadcast_index[name] = k
    element = self._mrf.work.type_signature.parameter[0].element
    self._x_spec = tf.TensorSpec([None, None, self._batch, *element[0].shape[1:]],
                                 element[0].dtype)
    self._y_spec = tf.TensorSpec([None, None, self._batch, *element[1].shape[1:]],
                                 element[1].dtype)
    self._train = tf.function(
        lambda w, x, y, mask, steps, clip: model.train(
            w, x, y, mask, steps, learning_rate=self._lr, clip=clip),
        input_signature=[[tf.TensorSpec(s, tf.float32) for s in model.shapes],
                         self._x_spec, self._y_spec,
                         tf.TensorSpec([None, None, self._batch], tf.float32),
                         tf.TensorSpec([None], tf.int32), tf.TensorSpec([], tf.float32)])

  def _weights(self, broadcast: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The global model's trainable tensors in what `prepare` sends the clients."""
    shapes = self._model.shapes
    for start in range(len(broadcast) - len(shapes) + 1):
      if all(np.shape(broadcast[start + k]) == s for k, s in enumerate(shapes)):
        return list(broadcast[start:start + len(shapes)])
    raise ValueError('runtime.engine=vectorized found no model weights in the broadcast.')

  def _streams(self, client_data):
    """Per client: its examples over `local_epochs` passes and its steps, as
    `dataset_fn` would batch them (batches of `batch_size`, the last partial, then the
    first `max_steps`); a canary (label < 0) trains on nothing."""
    streams, canary_ids = [], []
    for x, y, *max_steps in client_data:
      canary = len(y) and np.min(y) < 0
      canary_ids.append(int(-np.min(y) - 1) if canary else -1)
      if canary:
        x, y = x[:0], y[:0]
      steps = -(-len(y) * self._epochs // self._batch)
      if max_steps and max_steps[0] >= 0:
        steps = min(steps, int(max_steps[0]))
      streams.append((np.concatenate([x] * self._epochs), np.concatenate([y] * self._epochs),
                      steps))
    return streams, canary_ids

  def _batches(self, streams):
    """The padded batches of `streams`: x [C, S, B, ...], y, mask [C, S, B], steps [C]."""
    cohort, most = len(streams), max([s for _, _, s in streams] + [1])
    x = np.zeros((cohort, most * self._batch) + tuple(self._x_spec.shape[3:]),
                 self._x_spec.dtype.as_numpy_dtype)
    y = np.zeros((cohort, most * self._batch) + tuple(self._y_spec.shape[3:]),
                 self._y_spec.dtype.as_numpy_dtype)
    mask = np.zeros((cohort, most * self._batch), np.float32)
    steps = np.zeros(cohort, np.int32)
    for c, (xc, yc, sc) in enumerate(streams):
      k = min(len(yc), sc * self._batch)
      x[c, :k], y[c, :k], mask[c, :k], steps[c] = xc[:k], yc[:k], 1.0, sc
    shape = (cohort, most, self._batch)
    return (x.reshape(shape + x.shape[2:]), y.reshape(shape + y.shape[2:]),
            mask.reshape(shape), steps)

  def chunk_size(self, streams) -> int:
    most = max([s for _, _, s in streams] + [1])
    return stacked.chunk_size(self._model, memory_mb=self._memory_mb,
                              batch_size=self._batch, steps=most,
                              input_size=int(np.prod(self._x_spec.shape[3:])))

  def accumulate_group(self, broadcast, acc, secure_params, client_data, g: int = 0):
    del secure_params, g  # the refused configurations are the ones with secure sums
    if not client_data:
      return acc, [[], [], []]
    weights = self._weights(broadcast)
    clip = stacked.clip_value(self._clip)
    if self._clip is not None and 'sum_params' in self._broadcast_index:
      clip = np.float32(broadcast[self._broadcast_index['sum_params']])
    streams, canary_ids = self._streams(client_data)
    # Clients by their steps, most first (stable): each step then trains a prefix of
    # a chunk, and a chunk's clients have similar steps (`StackedModel.train`).
    order = sorted(range(len(streams)), key=lambda c: -streams[c][2])
    streams = [streams[c] for c in order]
    size = self.chunk_size(streams)
    sums = dict.fromkeys(('loss_total', 'loss_count'), 0.0)
    sums.update({f'{m}_{p}': 0.0 for m in self._model.metric_names
                 for p in ('total', 'count')})
    deltas = [np.zeros(s, np.float32) for s in self._model.shapes]
    norms, examples, batches = [], 0, 0
    for start in range(0, len(streams), size):  # chunks, summed in order
      x, y, mask, steps = self._batches(streams[start:start + size])
      chunk_sums, chunk_norms, loss_sum, totals, counts = self._train(
          weights, x, y, mask, steps, clip)
      deltas = [d + c.numpy() for d, c in zip(deltas, chunk_sums)]
      norms.append(chunk_norms.numpy())
      examples, batches = examples + int(mask.sum()), batches + int(steps.sum())
      sums['loss_total'] += float(loss_sum.numpy().sum())
      sums['loss_count'] += float(mask.sum())
      for name, t, c in zip(self._model.metric_names, totals, counts):
        sums[f'{name}_total'] += float(t.numpy().sum())
        sums[f'{name}_count'] += float(c.numpy().sum())
    norms = np.concatenate(norms)[np.argsort(order)]  # in the clients' order
    deltas = self._add_canaries(deltas, norms, canary_ids, clip)
    below = np.zeros(len(client_data), np.float32)
    if 'current_estimate' in self._broadcast_index:
      # Adaptive clipping (Andrew et al. 2021), TF Privacy's QuantileEstimatorQuery:
      # each client reports whether its unclipped norm is at most the estimate, minus
      # 0.5 (so that the record's sensitivity is 0.5).
      estimate = np.float32(broadcast[self._broadcast_index['current_estimate']])
      below = (norms <= estimate).astype(np.float32) - np.float32(0.5)
    sums.update({'clients': len(client_data), 'num_examples': examples,
                 'num_batches': batches, 'below_estimate': float(below.sum()),
                 **{f'delta_{k}': d for k, d in enumerate(deltas)}})
    out = [np.asarray(a) + np.asarray(sums[name], dtype=np.dtype(t.dtype))
           for a, (name, t) in zip(acc, self._layout)]
    return out, [[], [], []]

  def _add_canaries(self, deltas, norms, canary_ids, clip):
    """The sums with each canary's update, its direction times `canaries.SCALE`,
    clipped as a client's (its entry of `norms` set to that update's norm)."""
    ids = [(c, i) for c, i in enumerate(canary_ids) if i >= 0]
    if not ids:
      return deltas
    if self._canary_seed is None:
      raise ValueError('A canary client came to a vectorized runner built without the '
                       'run\'s canary seed.')
    sizes = [int(np.prod(s)) for s in self._model.shapes]
    for c, i in ids:
      update = canaries.unit_direction(i, self._canary_seed, sum(sizes)) * np.float32(
          canaries.SCALE)
      norms[c] = np.sqrt(np.sum(np.square(update)))
      scale = clip / norms[c] if norms[c] > clip else np.float32(1.0)
      parts = np.split(update * scale, np.cumsum(sizes)[:-1])
      deltas = [d + p.reshape(d.shape) for d, p in zip(deltas, parts)]
    return deltas


def _layout(acc_type, model: stacked.StackedModel) -> list[tuple[str, Any]]:
  """What each leaf of the accumulator TFF's client work fills: a training metric's
  total or count (by name), the example and batch counts, the client count, adaptive
  clipping's below-estimate count, or a model tensor's delta (by shape, in order)."""
  metrics = {'loss', *model.metric_names}
  layout, deltas = [], 0
  for path, t in _leaves(acc_type):
    names = [p for p in path if isinstance(p, str)]
    if metrics & set(names):
      layout.append((names[-1] + ('_total' if path[-1] == 0 else '_count'), t))
    elif names and names[-1] in ('num_examples', 'num_batches'):
      layout.append((names[-1], t))
    elif len(t.shape) == 0 and np.dtype(t.dtype) == np.int32:
      layout.append(('clients', t))
    elif names and names[-1] == 'quantile_estimator_state':
      layout.append(('below_estimate', t))
    elif (np.dtype(t.dtype) == np.float32 and deltas < len(model.shapes)
          and tuple(t.shape) == model.shapes[deltas]):
      layout.append((f'delta_{deltas}', t))
      deltas += 1
    else:
      raise ValueError(f'runtime.engine=vectorized does not know the client work that '
                       f'produces {path} ({t}); use runtime.engine=mapreduce.')
  if deltas != len(model.shapes):
    raise ValueError(f'runtime.engine=vectorized found {deltas} of the model\'s '
                     f'{len(model.shapes)} tensors in the accumulator; use '
                     'runtime.engine=mapreduce.')
  return layout
