"""A task's Keras model as a pure function of per-client weights, trained for a whole
cohort at once: the client side of the `vectorized` engine.

TFF's client work (`build_model_delta_update_with_tff_optimizer`, the work of
`build_unweighted_fed_avg`) runs plain local SGD of the Keras model on each client's
batches. Here every client's weights are stacked on a leading axis and one local step
of every client is one computation: the model's forward pass under
`tf.vectorized_map` (TensorFlow's pfor, the `vmap` of FedJAX-style simulators), with the
model's own layers called on each client's weights. The weights are swapped into the
layers' attributes while the function is traced (`StackedModel.forward`), so any model
that a task builds from Keras layers runs unchanged; nothing here is written per model.
The loss and the training metrics are the task's own Keras loss (per example) and
metric functions, masked to the client's real examples and averaged per batch as Keras
and TFF do.

Where pfor's generic rewrite of a layer is slow, the layer gets an equivalent batched
formulation, measured: a causal `Conv1D` under pfor becomes a grouped convolution,
several times slower on this CPU than the same convolution as shifted copies and one
matmul (`_im2col_conv1d`; `layers` in results/benchmark/scale.json).

Clients have different numbers of local steps: each is padded with masked examples to
full batches (a client's last batch may be partial); the clients come sorted by their
steps, most first, and each step trains only those still training. The deltas (initial
minus final weights) are zeroed where not finite, as TFF's client work does, then
clipped per client to the round's clip.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import tensorflow as tf

# Bytes per float32 element, and how many copies of a client's weights a local step
# holds at once (the stacked weights, their gradients, the updated weights and the
# initial weights' delta), for sizing chunks to a memory budget.
_FLOAT_BYTES = 4
_WEIGHT_COPIES = 4
# Copies of a step's activations alive at once (forward values kept for the backward
# pass, and their gradients), for the same estimate.
_ACTIVATION_COPIES = 2


def im2col_conv1d(inputs, kernel, *, dilation: int = 1):
  """A stride-1, channels-last 1-D convolution without padding (`inputs` [B, T, C],
  `kernel` [K, C, F]) as one matmul over the input's K shifted copies (im2col)."""
  kernel_size = kernel.shape[0]
  length = tf.shape(inputs)[1] - dilation * (kernel_size - 1)
  columns = tf.concat([inputs[:, i * dilation:i * dilation + length]
                       for i in range(kernel_size)], axis=-1)
  return tf.matmul(columns, tf.reshape(kernel, [-1, tf.shape(kernel)[-1]]))


def _im2col_conv1d(layer):
  """`layer.convolution_op` (a Conv1D with stride 1, channels last, one group) as
  `im2col_conv1d`; the causal or valid padding is applied by the layer's `call` before,
  as for its own op."""
  dilation, = layer.dilation_rate
  return lambda inputs, kernel: im2col_conv1d(inputs, kernel, dilation=dilation)


def _batched_layer_ops(model) -> None:
  """Installs the batched formulations of the layers whose pfor rewrite is slow."""
  for layer in model.submodules:
    if (isinstance(layer, tf.keras.layers.Conv1D) and tuple(layer.strides) == (1,)
        and layer.data_format == 'channels_last' and layer.groups == 1
        and layer.padding in ('causal', 'valid')):
      object.__setattr__(layer, 'convolution_op', _im2col_conv1d(layer))


def refusal(keras_model, metrics: Sequence[Any]) -> str:
  """Why `StackedModel` cannot train this model with these metrics ('': it can)."""
  if keras_model.non_trainable_variables:
    return ('it has non-trainable variables '
            f'{[v.name for v in keras_model.non_trainable_variables]}')
  held = {id(value) for layer in keras_model.submodules
          for value in vars(layer).values() if isinstance(value, tf.Variable)}
  missing = [v.name for v in keras_model.trainable_variables if id(v) not in held]
  if missing:
    return f'no layer attribute holds {missing}'
  other = [m.name for m in metrics if getattr(m, '_fn', None) is None]
  if other:
    return f'its metrics {other} are not mean metrics of labels and outputs'
  return ''


class StackedModel:
  """A Keras model, its loss and its mean metrics, trained for a stack of clients."""

  def __init__(self, keras_model, loss, metrics: Sequence[Any], input_spec):
    """`loss`: a Keras loss (its reduction is replaced by per-example values);
    `metrics`: Keras mean metrics (`MeanMetricWrapper`: a function of labels and
    outputs per example), as the task gives TFF; `input_spec`: the model's input
    (`[None, ...]`)."""
    if reason := refusal(keras_model, metrics):
      raise ValueError(f'runtime.engine=vectorized cannot train this model: {reason}. '
                       'Use runtime.engine=mapreduce.')
    self._model = keras_model
    slots = {}
    for layer in keras_model.submodules:
      for attr, value in vars(layer).items():
        if isinstance(value, tf.Variable):
          slots.setdefault(id(value), (layer, attr))
    self._slots = [slots[id(v)] for v in keras_model.trainable_variables]
    self.shapes = [tuple(v.shape) for v in keras_model.trainable_variables]
    self.num_parameters = int(sum(np.prod(s) for s in self.shapes))
    _batched_layer_ops(keras_model)
    self._loss = type(loss).from_config({**loss.get_config(), 'reduction': 'none'})
    self.metric_names = []
    self._metric_fns = []
    for m in metrics:  # Keras MeanMetricWrapper: a function of labels and outputs
      self.metric_names.append(m.name)
      self._metric_fns.append(lambda y, out, fn=m._fn, kw=dict(m._fn_kwargs): fn(y, out, **kw))  # pylint: disable=protected-access
    self._activations = _activations_per_example(keras_model, input_spec)

  def forward(self, weights: Sequence[tf.Tensor], x: tf.Tensor) -> tf.Tensor:
    """The model's outputs on `x` with `weights` in its layers (trainable order)."""
    saved = [getattr(layer, attr) for layer, attr in self._slots]
    try:
      for (layer, attr), w in zip(self._slots, weights):
        object.__setattr__(layer, attr, w)
      return self._model(x, training=True)
    finally:
      for (layer, attr), v in zip(self._slots, saved):
        object.__setattr__(layer, attr, v)

  def bytes_per_client(self, *, batch_size: int, steps: int, input_size: int) -> int:
    """Estimated engine memory of one client in a cohort computation: its weights'
    copies, one step's activations and its padded batches."""
    return _FLOAT_BYTES * (_WEIGHT_COPIES * self.num_parameters
                           + _ACTIVATION_COPIES * batch_size * self._activations
                           + steps * batch_size * (input_size + 2))

  def train(self, weights, x, y, mask, steps, *, learning_rate: float, clip):
    """Local SGD of every client at once (`train_deltas`), then each delta clipped to
    L2 norm `clip` (inf: none) and the sums taken. Returns the sums over the clients
    of the clipped deltas, and per client: the unclipped delta's norm, the loss's and
    each metric's (total, count).
    """
    deltas, loss_sum, totals, counts = self.train_deltas(
        weights, x, y, mask, steps, learning_rate=learning_rate)
    cohort = tf.shape(x)[0]
    # TF Privacy's clip_by_global_norm, per client.
    norms = tf.sqrt(tf.add_n([tf.reduce_sum(tf.reshape(tf.square(d), [cohort, -1]), axis=1)
                              for d in deltas]))
    scale = tf.where(norms > clip, clip / norms, tf.ones_like(norms))
    sums = [tf.reduce_sum(d * _per_client(scale, d), axis=0) for d in deltas]
    return sums, norms, loss_sum, totals, counts

  def train_deltas(self, weights, x, y, mask, steps, *, learning_rate: float):
    """Local SGD of every client at once: each client's delta (initial minus final
    weights, zeroed where not finite), the loss's and each metric's (total, count).

    `weights`: the global model's trainable tensors; x [C, S, B, ...], y [C, S, B, 1]
    and mask [C, S, B]: each client's padded batches; `steps` [C]: its real steps, in
    non-increasing order, so that the clients still training at step s are the first
    ones (each step computes only those: no work on padded steps).
    """
    cohort = tf.shape(x)[0]
    stacked = [tf.tile(w[None], tf.concat([[cohort], tf.ones([len(w.shape)], tf.int32)], 0))
               for w in weights]
    stacked = [tf.ensure_shape(s, [None, *w.shape]) for s, w in zip(stacked, weights)]
    loss_sum = tf.zeros([cohort])
    totals = [tf.zeros([cohort]) for _ in self._metric_fns]
    counts = [tf.zeros([cohort]) for _ in self._metric_fns]
    for s in tf.range(tf.reduce_max(tf.concat([steps, [0]], 0))):  # no empty steps
      k = tf.reduce_sum(tf.cast(steps > s, tf.int32))  # the clients still training
      pad = lambda v, k=k: tf.pad(v, [[0, cohort - k]])
      head = [w[:k] for w in stacked]
      xs, ys, ms = x[:k, s], y[:k, s], mask[:k, s]
      n = tf.reduce_sum(ms, axis=1)  # examples in this step's batch, per client
      flat_y = tf.reshape(ys, tf.concat([[-1], tf.shape(ys)[2:]], 0))
      with tf.GradientTape() as tape:
        tape.watch(head)
        out = tf.vectorized_map(lambda a: self.forward(a[0], a[1]), (head, xs))
        flat_out = tf.reshape(out, tf.concat([[-1], tf.shape(out)[2:]], 0))
        losses = tf.reshape(self._loss(flat_y, flat_out), tf.shape(ms)) * ms
        batch_loss = tf.math.divide_no_nan(tf.reduce_sum(losses, axis=1), n)
        total = tf.reduce_sum(batch_loss)
      grads = [tf.convert_to_tensor(g) for g in tape.gradient(total, head)]
      stacked = [tf.concat([h - learning_rate * g, w[k:]], axis=0)
                 for h, g, w in zip(head, grads, stacked)]
      loss_sum += pad(batch_loss * n)
      values = [tf.reshape(tf.cast(fn(flat_y, flat_out), tf.float32),
                           tf.concat([tf.shape(ms), [-1]], 0)) * ms[..., None]
                for fn in self._metric_fns]
      totals = [t + pad(tf.reduce_sum(v, axis=[1, 2])) for t, v in zip(totals, values)]
      counts = [c + pad(tf.reduce_sum(tf.ones_like(v) * ms[..., None], axis=[1, 2]))
                for c, v in zip(counts, values)]
    deltas = [w[None] - s for w, s in zip(weights, stacked)]
    finite = tf.reduce_all(tf.stack([
        tf.reduce_all(tf.math.is_finite(tf.reshape(d, [cohort, -1])), axis=1)
        for d in deltas]), axis=0)
    deltas = [tf.where(_per_client(finite, d), d, tf.zeros_like(d)) for d in deltas]
    return deltas, loss_sum, totals, counts


def _per_client(values, like):
  """`values` [C] shaped to broadcast against `like` [C, ...]."""
  return tf.reshape(values, tf.concat([[tf.shape(values)[0]],
                                       tf.ones([len(like.shape) - 1], tf.int32)], 0))


def traced_forward(keras_model, input_spec):
  """The model's training-mode forward pass on one example of `input_spec`
  (`[None, ...]`), traced: the graph its memory estimate and its FLOPs are read from."""
  return tf.function(lambda x: keras_model(x, training=True)).get_concrete_function(
      tf.TensorSpec([1, *input_spec.shape[1:]], input_spec.dtype))


def _activations_per_example(keras_model, input_spec) -> int:
  """Float values the model's forward pass computes for one example: every float
  output of every op of its traced call (a recurrent layer's gates at each step
  included), for the memory estimate."""
  call = traced_forward(keras_model, input_spec)
  return int(sum(t.shape.num_elements() for op in call.graph.get_operations()
                 for t in op.outputs
                 if t.dtype.is_floating and t.shape.is_fully_defined()
                 and op.type not in ('ReadVariableOp', 'Const', 'VarHandleOp')))


def chunk_size(model: StackedModel, *, memory_mb: float, batch_size: int, steps: int,
               input_size: int) -> int:
  """Clients per cohort computation within `memory_mb` of engine memory (at least 1)."""
  per_client = model.bytes_per_client(batch_size=batch_size, steps=steps,
                                      input_size=input_size)
  return max(1, int(memory_mb * 2**20 // per_client))


def clip_value(clip: Optional[float]) -> np.float32:
  """The `clip` argument of `StackedModel.train` for an L2 clip (None: not clipped)."""
  return np.float32(np.inf if clip is None else clip)
