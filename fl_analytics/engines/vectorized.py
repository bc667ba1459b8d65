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

The aggregator's client-side steps take one of two paths, checked against the
`mapreduce` engine's round (`tests/vectorized_test.py`: every accumulator leaf and
secure sum to float tolerance, for every task, model, mechanism and option):

* the summed path, a second implementation of the client work where it is small:
  the delta itself (`none`), clipped to an L2 norm (`gaussian_fixed`; `tree`, whose
  noise is added on the server), or that and the norm compared with adaptive
  clipping's current estimate (`gaussian_adaptive`, Andrew et al. 2021); audit
  canaries, whose update is their direction (`fl_analytics.privacy.canaries`). The
  clipped deltas are summed in the stacked computation. It is used when the
  accumulator's type holds only what it computes (the metric sums by name, the model's
  tensors by shape, the client count, the estimate's count) and nothing is summed
  securely;
* the graph path for everything else (`distributed`, compression, `dp.secure_sum`, and
  any mechanism added later): each client's delta goes through TFF's own client graph
  with the training cut out (`_AggregationStep`), so TFF's rotation, rounding, noise
  and quantization run as TFF wrote them, one session call per client, in
  `GRAPH_LANES` lanes side by side.
"""

from __future__ import annotations

import concurrent.futures
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


# The accumulator leaves that `_AggregationStep` fills (`_graph_layout`).
GRAPH = 'graph'
# Clients through the aggregation graph side by side (`VectorizedRunner(lanes=...)`):
# its session calls are many small ops, one thread each.
GRAPH_LANES = 2


def _delta_replacements(graph_def, weight_names: Sequence[str],
                        deltas: Sequence[tf.Tensor]) -> dict:
  """`input_map` entries replacing the model delta of TFF's client work in its graph.

  TFF's client work (`build_model_delta_update_with_tff_optimizer`) computes each
  trainable tensor's delta as `initial - trained`: a `Sub` op of the broadcast tensor
  (`weight_names`: the graph's names of the broadcast weights, in trainable order) and
  a read of the trained variable. Exactly one such op per tensor, or ValueError."""
  nodes = {n.name: n for n in graph_def.node}
  inputs = [name[:-2] if name.endswith(':0') else name for name in weight_names]
  found = {name: [] for name in inputs}
  for node in graph_def.node:
    if node.op == 'Sub' and len(node.input) == 2 and node.input[0] in found:
      read = nodes.get(node.input[1].split(':')[0])
      if read is not None and read.op == 'ReadVariableOp':
        found[node.input[0]].append(node.name)
  if any(len(ops) != 1 for ops in found.values()):
    raise ValueError(
        'runtime.engine=vectorized did not find the model delta (initial minus trained '
        f'weights, one op per tensor) in TFF\'s client graph: {found}. Use '
        'runtime.engine=mapreduce.')
  replacements = {f'{found[name][0]}:0': d for name, d in zip(inputs, deltas)}
  # The client work's ops (its function call's scope, where the deltas are) order the
  # aggregator's ops after the training through control inputs: without the training,
  # those wait on nothing.
  scopes = {ops[0].rsplit('/', 1)[0] + '/' for ops in found.values()}
  done = tf.no_op(name='client_work_done')
  for node in graph_def.node:
    for control in node.input:
      if control.startswith('^') and any(control[1:].startswith(p) for p in scopes):
        replacements[control] = f'^{done.name}'
  return replacements


class _AggregationStep:
  """The aggregator's client-side steps as TFF built them, for one client's delta.

  TFF's client graph (`work` fused with `accumulate`, as the `mapreduce` engine runs
  it) imported with the model delta replaced by a placeholder
  (`_delta_replacements`): whatever the aggregator does on the client (clipping,
  rotation, scaling and stochastic rounding, local noise, modular wrap, quantization
  and bit-packing, the secure sums' inputs) is TFF's own graph, draws included. Only
  the accumulator leaves that are not training metrics are fetched, so the local
  training in the graph is pruned away and never runs."""

  def __init__(self, mrf, dataset_fn, *, weight_positions: Sequence[int],
               shapes: Sequence[tuple], graph_leaves: Sequence[int],
               pin_draws: bool = False):
    graph = mrf_runner._Imported(pin_draws)  # pylint: disable=protected-access
    self._graph = graph
    broadcast = graph.placeholders('broadcast', mrf.work.type_signature.parameter[1])
    self._broadcast = mrf_runner._flat_tensors(broadcast)  # pylint: disable=protected-access
    # The work's dataset, from the client's arrays: fed only where the aggregation reads
    # them (`needs_data`), else pruned with the training.
    x, y = mrf_runner.client_arrays(graph, mrf)
    with graph.graph.as_default():
      self._deltas = [tf.compat.v1.placeholder(tf.float32, s, name=f'delta_{k}')
                      for k, s in enumerate(shapes)]
      dataset = dataset_fn(x, y)
    # Flattened parameters of `work`: the dataset, then the broadcast.
    replace = lambda graph_def, names: _delta_replacements(
        graph_def, [names[1 + p] for p in weight_positions], self._deltas)
    self._acc_in, acc_out, secure = mrf_runner.client_graph(graph, mrf, dataset, broadcast,
                                                            replace=replace)
    fetches = [acc_out[k] for k in graph_leaves] + [t for part in secure for t in part]
    reached = mrf_runner.ops_reached([t.op for t in fetches])
    if trained := sorted(o.name for o in reached if o.type == 'ReadVariableOp'):
      raise ValueError('runtime.engine=vectorized: the aggregation in TFF\'s client graph '
                       f'reads the trained model beyond its delta ({trained[:3]}). Use '
                       'runtime.engine=mapreduce.')
    # The canaries' client work reads the client's data (a canary is known by its
    # labels, `fl_analytics.privacy.canaries`): then the client's arrays are fed too.
    self.needs_data = bool(reached & {x.op, y.op})
    graph.finalize()
    self._graph_leaves = list(graph_leaves)
    self._secure_sizes = [len(t) for t in secure]
    # Only what the fetches read is fed (a session call's cost grows with its feeds).
    feeds = self._broadcast + self._acc_in + self._deltas + [x, y]
    self._fed = [k for k, t in enumerate(feeds) if t.op in reached]
    self._call = graph.make_callable(fetches, [feeds[k] for k in self._fed], init=False)

  def run(self, broadcast, acc, deltas, data=()):
    """The accumulator after this client's `deltas` (its graph leaves; the others as
    given), and its secure-sum inputs. `data`: the client's (x, y), if `needs_data`."""
    values = [*broadcast, *acc, *deltas, *(data if self.needs_data else (None, None))]
    out = self._call(*[values[k] for k in self._fed])
    acc = list(acc)
    for k, value in zip(self._graph_leaves, out):
      acc[k] = value
    return acc, mrf_runner.split(out[len(self._graph_leaves):], self._secure_sizes)

  def close(self):
    self._graph.close()


class VectorizedRunner(mrf_runner.MapReduceRunner):
  """`MapReduceRunner` whose clients train in stacked computations (`stacked`)."""

  _CLIENT_STEPS = False

  def __init__(self, process, dataset_fn, *, model: stacked.StackedModel,
               learning_rate: float, batch_size: int, local_epochs: int,
               clip: Optional[float], groups: int = 1, memory_mb: float = 1024.0,
               canary_seed: Optional[int] = None, lanes: int = GRAPH_LANES,
               pin_draws: bool = False, secure_protocol=None):
    """`model`: the task's model, loss and metrics (what TFF's client work trains).
    `clip`: the L2 clip of each update (None: not clipped); where `prepare` broadcasts
    the clip (adaptive clipping, whose clip moves), that one is used. `groups`: the
    cohort is trained in that many shards (client k in shard k % groups), one after
    another, their sums merged in order. `memory_mb`: each shard is trained in chunks
    of consecutive clients sized to that much engine memory (`stacked.chunk_size`),
    their sums added in order. `canary_seed`: the run's seed, with audit canaries
    (`fl_analytics.privacy.canaries`; their updates are their directions).
    `lanes`: where the aggregator's client-side steps run as TFF's graph, client by
    client (`_AggregationStep`), that many run side by side (the result depends on
    it, as on `groups`: float sums in another order). `pin_draws`: for tests only,
    the client-side draws of the aggregation graph are a fixed sequence
    (`mrf_runner._pin_draws`). `secure_protocol`: as `MapReduceRunner`'s."""
    super().__init__(process, dataset_fn, groups=groups, parallel=1,
                     secure_protocol=secure_protocol)
    self._model = model
    self._lr, self._batch, self._epochs, self._clip = (
        float(learning_rate), int(batch_size), int(local_epochs), clip)
    self._memory_mb, self._canary_seed = float(memory_mb), canary_seed
    broadcast = _leaves(self._mrf.prepare.type_signature.result)
    self._weight_start = _weight_start([tuple(t.shape) for _, t in broadcast], model.shapes)
    # Where `prepare` puts the clip of the sum query and adaptive clipping's current
    # estimate (what a client compares its update's norm with), if it has them.
    self._broadcast_index = {}
    for k, (path, _) in enumerate(broadcast):
      for name in ('sum_params', 'current_estimate'):
        if name in path:
          self._broadcast_index[name] = k
    element = self._mrf.work.type_signature.parameter[0].element
    self._x_spec = tf.TensorSpec([None, None, self._batch, *element[0].shape[1:]],
                                 element[0].dtype)
    self._y_spec = tf.TensorSpec([None, None, self._batch, *element[1].shape[1:]],
                                 element[1].dtype)
    batches = [[tf.TensorSpec(s, tf.float32) for s in model.shapes], self._x_spec,
               self._y_spec, tf.TensorSpec([None, None, self._batch], tf.float32),
               tf.TensorSpec([None], tf.int32)]
    self._layout, self._steps, self._lane_pool = self._summed_layout(), [], None
    if self._layout is not None:  # the summed path: clipped deltas summed in the stack
      self._train = tf.function(
          lambda w, x, y, mask, steps, clip: model.train(
              w, x, y, mask, steps, learning_rate=self._lr, clip=clip),
          input_signature=batches + [tf.TensorSpec([], tf.float32)])
    else:  # the aggregator's client-side graph, client by client (`_AggregationStep`)
      self._layout = _graph_layout(self._mrf.accumulate.type_signature.result, model)
      self._train = tf.function(
          lambda w, x, y, mask, steps: model.train_deltas(
              w, x, y, mask, steps, learning_rate=self._lr), input_signature=batches)
      self._steps = [_AggregationStep(
          self._mrf, dataset_fn, shapes=model.shapes, pin_draws=pin_draws,
          weight_positions=range(self._weight_start,
                                 self._weight_start + len(model.shapes)),
          graph_leaves=[k for k, (role, _) in enumerate(self._layout) if role == GRAPH])
                     for _ in range(lanes)]
      self._lane_pool = (concurrent.futures.ThreadPoolExecutor(lanes) if lanes > 1
                         else None)

  def _summed_layout(self) -> Optional[list]:
    """The accumulator's layout when the aggregator's client work is the summed path's
    (`_layout`: the delta, clipped; adaptive clipping's count) and nothing is summed
    securely; else None."""
    if any(self._mrf.work.type_signature.result[i] for i in (1, 2, 3)):
      return None
    try:
      return _layout(self._mrf.accumulate.type_signature.result, self._model)
    except ValueError:
      return None

  @property
  def client_path(self) -> str:
    """'summed' (the clients' clipped deltas summed in the stacked computation) or
    'graph' (each client's delta through TFF's aggregation graph, `_AggregationStep`)."""
    return 'graph' if self._steps else 'summed'

  def _weights(self, broadcast: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The global model's trainable tensors in what `prepare` sends the clients."""
    return list(broadcast[self._weight_start:self._weight_start + len(self._model.shapes)])

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

  def _chunks(self, client_data, *train_args):
    """The clients sorted by their steps, most first (stable: each step then trains a
    prefix of a chunk, and a chunk's clients have similar steps), trained in chunks
    (`chunk_size`). Yields per chunk: the clients' indexes in `client_data`, their
    canary ids (-1: not a canary), their padded batches' mask and steps, and what
    `self._train` returns."""
    streams, canary_ids = self._streams(client_data)
    order = sorted(range(len(streams)), key=lambda c: -streams[c][2])
    streams = [streams[c] for c in order]
    weights, size = train_args[0], self.chunk_size(streams)
    for start in range(0, len(streams), size):
      x, y, mask, steps = self._batches(streams[start:start + size])
      indexes = order[start:start + size]
      yield (indexes, [canary_ids[c] for c in indexes], mask, steps,
             self._train(weights, x, y, mask, steps, *train_args[1:]))

  def _metric_sums(self) -> dict:
    sums = dict.fromkeys(('loss_total', 'loss_count', 'num_examples', 'num_batches'), 0.0)
    sums.update({f'{m}_{p}': 0.0 for m in self._model.metric_names
                 for p in ('total', 'count')})
    return sums

  def _add_metrics(self, sums: dict, mask, steps, loss_sum, totals, counts) -> None:
    """Adds a chunk's training metrics' sums to `sums`."""
    sums['num_examples'] += int(mask.sum())
    sums['num_batches'] += int(steps.sum())
    sums['loss_total'] += float(loss_sum.numpy().sum())
    sums['loss_count'] += float(mask.sum())
    for name, t, c in zip(self._model.metric_names, totals, counts):
      sums[f'{name}_total'] += float(t.numpy().sum())
      sums[f'{name}_count'] += float(c.numpy().sum())

  def _filled(self, acc, sums: dict, roles=None) -> list:
    """`acc` plus `sums` in the leaves whose role they name (`roles`: those of
    `self._layout`, or all of them)."""
    return [np.asarray(a) + np.asarray(sums[name], dtype=np.dtype(t.dtype))
            if roles is None or name in roles else a
            for a, (name, t) in zip(acc, self._layout)]

  def accumulate_group(self, broadcast, acc, secure_params, client_data, g: int = 0):
    del g  # one session runs every group, one after another
    if not client_data:
      return acc, self.zero_secure(secure_params)
    if self._steps:
      return self._accumulate_graph(broadcast, acc, secure_params, client_data)
    return self._accumulate_summed(broadcast, acc, client_data), [[], [], []]

  def _accumulate_summed(self, broadcast, acc, client_data):
    """The summed path: the clipped deltas and the norms' comparisons summed in the
    stacked computation."""
    clip = stacked.clip_value(self._clip)
    if self._clip is not None and 'sum_params' in self._broadcast_index:
      clip = np.float32(broadcast[self._broadcast_index['sum_params']])
    sums, norms, order = self._metric_sums(), [], []
    deltas = [np.zeros(s, np.float32) for s in self._model.shapes]
    canary_ids = [-1] * len(client_data)
    for indexes, ids, mask, steps, out in self._chunks(
        client_data, self._weights(broadcast), clip):  # chunks, summed in order
      chunk_sums, chunk_norms, *metrics = out
      deltas = [d + c.numpy() for d, c in zip(deltas, chunk_sums)]
      norms.append(chunk_norms.numpy())
      order += indexes
      for c, i in zip(indexes, ids):
        canary_ids[c] = i
      self._add_metrics(sums, mask, steps, *metrics)
    norms = np.concatenate(norms)[np.argsort(order)]  # in the clients' order
    deltas = self._add_canaries(deltas, norms, canary_ids, clip)
    below = np.zeros(len(client_data), np.float32)
    if 'current_estimate' in self._broadcast_index:
      # Adaptive clipping (Andrew et al. 2021), TF Privacy's QuantileEstimatorQuery:
      # each client reports whether its unclipped norm is at most the estimate, minus
      # 0.5 (so that the record's sensitivity is 0.5).
      estimate = np.float32(broadcast[self._broadcast_index['current_estimate']])
      below = (norms <= estimate).astype(np.float32) - np.float32(0.5)
    sums.update({'clients': len(client_data), 'below_estimate': float(below.sum()),
                 **{f'delta_{k}': d for k, d in enumerate(deltas)}})
    return self._filled(acc, sums)

  def _accumulate_graph(self, broadcast, acc, secure_params, client_data):
    """The graph path: each client's delta from the stacked computation, through TFF's
    client-side aggregation graph (`_AggregationStep`). A chunk's client k goes to lane
    k % lanes; the lanes run side by side, each its own accumulator from `acc` (the
    aggregation's zero), merged in lane order with TFF's `merge`."""
    lanes = len(self._steps)
    sums, accs = self._metric_sums(), [list(acc) for _ in range(lanes)]
    secures = [self.zero_secure(secure_params) for _ in range(lanes)]

    def run_lane(lane, updates):  # a lane's own accumulator and secure-sum totals
      for update, data in updates:
        accs[lane], secure = self._steps[lane].run(broadcast, accs[lane], update, data)
        mrf_runner.add_secure(secures[lane], secure)

    for indexes, _, mask, steps, out in self._chunks(client_data,
                                                     self._weights(broadcast)):
      deltas, *metrics = out
      deltas = [d.numpy() for d in deltas]
      # A canary trains nothing; TFF's graph makes its update from its data.
      updates = [([d[i] for d in deltas], client_data[c][:2]) for i, c in enumerate(indexes)]
      jobs = [(lane, updates[lane::lanes]) for lane in range(lanes)]
      if self._lane_pool is None:
        for job in jobs:
          run_lane(*job)
      else:
        list(self._lane_pool.map(lambda job: run_lane(*job), jobs))
      self._add_metrics(sums, mask, steps, *metrics)
    acc, secure_g = self.merge(list(zip(accs, secures)))
    return self._filled(acc, sums, roles=set(sums)), secure_g

  def _canary_update(self, canary_id: int) -> list[np.ndarray]:
    """A canary's update, unclipped (the summed path): its direction times
    `canaries.SCALE`, in the model's tensors."""
    if self._canary_seed is None:
      raise ValueError('A canary client came to a vectorized runner built without the '
                       'run\'s canary seed.')
    sizes = [int(np.prod(s)) for s in self._model.shapes]
    update = canaries.unit_direction(canary_id, self._canary_seed, sum(sizes)) * np.float32(
        canaries.SCALE)
    return [p.reshape(s) for p, s in zip(np.split(update, np.cumsum(sizes)[:-1]),
                                         self._model.shapes)]

  def _add_canaries(self, deltas, norms, canary_ids, clip):
    """The sums with each canary's update (`_canary_update`) clipped as a client's (its
    entry of `norms` set to that update's norm)."""
    for c, i in enumerate(canary_ids):
      if i < 0:
        continue
      update = self._canary_update(i)
      norms[c] = np.sqrt(sum(np.sum(np.square(u)) for u in update))
      scale = clip / norms[c] if norms[c] > clip else np.float32(1.0)
      deltas = [d + u * scale for d, u in zip(deltas, update)]
    return deltas

  def close(self):
    super().close()
    if self._lane_pool is not None:
      self._lane_pool.shutdown()
    for step in self._steps:
      step.close()


def _weight_start(broadcast_shapes: Sequence[tuple], shapes: Sequence[tuple]) -> int:
  """Where the model's trainable tensors (`shapes`, in order) begin in the broadcast."""
  for start in range(len(broadcast_shapes) - len(shapes) + 1):
    if all(broadcast_shapes[start + k] == s for k, s in enumerate(shapes)):
      return start
  raise ValueError('runtime.engine=vectorized found no model weights in the broadcast.')


def _metric_role(path, model: stacked.StackedModel) -> Optional[str]:
  """The training metric's sum an accumulator leaf holds (a metric's total or count,
  by name; the example and batch counts), or None."""
  names = [p for p in path if isinstance(p, str)]
  if {'loss', *model.metric_names} & set(names):
    return names[-1] + ('_total' if path[-1] == 0 else '_count')
  if names and names[-1] in ('num_examples', 'num_batches'):
    return names[-1]
  return None


def _graph_layout(acc_type, model: stacked.StackedModel) -> list[tuple[str, Any]]:
  """Each accumulator leaf's training metric (`_metric_role`), or `GRAPH` for those
  the aggregator's client-side graph fills (`_AggregationStep`)."""
  return [(_metric_role(path, model) or GRAPH, t) for path, t in _leaves(acc_type)]


def _layout(acc_type, model: stacked.StackedModel) -> list[tuple[str, Any]]:
  """What each leaf of the accumulator TFF's client work fills, where the client work
  is the summed path's: a training metric's sum (`_metric_role`), the client count,
  adaptive clipping's below-estimate count, or a model tensor's delta (by shape, in
  order). ValueError for any other leaf."""
  layout, deltas = [], 0
  for path, t in _leaves(acc_type):
    names = [p for p in path if isinstance(p, str)]
    if role := _metric_role(path, model):
      layout.append((role, t))
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
