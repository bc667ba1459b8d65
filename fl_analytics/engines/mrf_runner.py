"""Runs a TFF learning process's rounds in this process, from its MapReduceForm.

TFF compiles a federated round to `tff.backends.mapreduce.MapReduceForm`, the form its
production runtimes execute: `prepare` (server state -> what clients receive), `work`
(one client's data and that -> its contribution), `zero`/`accumulate`/`report` (the
aggregation), the secure sums, and `update` (server state and the aggregate -> new
state and metrics). Every piece is a TensorFlow graph that TFF built; nothing here
re-implements FedAvg, clipping or noise.

`MapReduceRunner` imports those graphs once into TensorFlow sessions and runs a round
as: `prepare` once; the cohort split into `groups` fixed groups (client k in group
k % groups), each group's clients in order through `work` fused with `accumulate` in
one graph and one session call (variables freshly initialized per client, as TFF does
per call), groups side by side on the machine's cores; the group accumulators combined
with `merge` in group order; `report`; the secure sums; `update`. The result depends
on `groups`, never on how many run at once. Compared with TFF's local C++ runtime this
removes per round the serialization of every client's `tf.data` pipeline into the
request, the gRPC round trips and the per-client launches of the process's separate
graphs; what remains per client is essentially its local training.

The secure sums are simulated in the clear (as TFF's own test backend,
`tff.backends.test`, does), or, with `secure_protocol`, run as the SecAgg+ protocol
between the clients and the server (`fl_analytics.privacy.secagg`; `protocol_sum`):
each client's secure-sum inputs are kept, and summed by the protocol modulo a modulus
large enough that the sum is the one simulated, bit for bit. `tests/mrf_runner_test.py`
checks that rounds give the same state and metrics as TFF's C++ runtime.
"""

from __future__ import annotations

import concurrent.futures
import os
from typing import Any, Optional, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff
# Not exported by TFF 0.87: the graph import its own executors use.
from tensorflow_federated.python.common_libs import structure
from tensorflow_federated.python.core.impl.types import type_conversions
from tensorflow_federated.python.core.impl.utils import tensorflow_utils
from tensorflow_federated.python.tensorflow_libs import graph_utils
from tensorflow_federated.python.tensorflow_libs import serialization_utils

from fl_analytics.privacy import secagg

_SESSION_TOKEN = b'fl_analytics.engines.mrf_runner'


def _flatten_value(value) -> list:
  return structure.flatten(structure.from_container(value, recursive=True))


# Stateful random ops of TFF's client-side aggregation (e.g. the stochastic rounding of
# uniform quantization); `_Imported(pin_draws=True)` seeds them.
_STATEFUL_RANDOM_OPS = ('RandomUniform', 'RandomUniformInt', 'RandomStandardNormal',
                        'TruncatedNormal', 'RandomPoisson', 'RandomPoissonV2',
                        'RandomGamma', 'Multinomial')


def _pin_draws(graph_def) -> dict:
  """For tests only: what makes a graph's random draws a fixed sequence. Every stateful
  random op is given a seed (from its position in the graph, so the same graph imported
  twice draws the same numbers call by call), and every `Timestamp` op (TFF seeds its
  stateless draws from the clock) is mapped to a constant, returned as `input_map`
  entries. Every client then draws with the same seeds: the noise is no longer private.
  """
  input_map = {}
  for position, node in enumerate(graph_def.node):
    if node.op in _STATEFUL_RANDOM_OPS:
      node.attr['seed'].i, node.attr['seed2'].i = 1, position + 1
    elif node.op == 'Timestamp':
      input_map[f'{node.name}:0'] = tf.constant(1.0, tf.float64)
  return input_map


class _Imported:
  """TFF TensorFlow computations stamped into one graph, run in one session.

  `pin_draws`: for tests only, the random draws of every imported graph are a fixed
  sequence (`_pin_draws`), so that two engines can be compared draw for draw."""

  def __init__(self, pin_draws: bool = False):
    self.pin_draws = pin_draws
    self.graph = tf.Graph()
    self._count = 0
    self._init_ops = []
    with self.graph.as_default():
      self.token = tf.compat.v1.placeholder(tf.string, [], name='session_token')
    # One thread per session, its own: the ops are tiny, and client groups run
    # side by side in separate sessions.
    self._config = tf.compat.v1.ConfigProto(
        intra_op_parallelism_threads=1, inter_op_parallelism_threads=1,
        use_per_session_threads=True)
    # The graphs are fixed once built; TFF already ran Grappler on each of them.
    self._config.experimental.optimize_for_static_graph = True
    self._config.graph_options.rewrite_options.disable_meta_optimizer = True
    self.session = None

  def placeholders(self, name: str, type_spec):
    value, _ = tensorflow_utils.stamp_parameter_in_graph(name, type_spec, self.graph)
    return value

  def call(self, comp, arg, replace=None):
    """Imports `comp`'s graph with `arg` as its parameter; returns its result.

    `replace`: a function of the graph's `GraphDef` and its parameters' tensor names
    (flattened) returning more `input_map` entries (tensor names of the graph to the
    tensors that replace them).

    As `tensorflow_utils.deserialize_and_call_tf_computation`, but without its
    check of the imported result's inferred shapes, which some of TFF's own graphs
    fail (a `[2]` seed inferred as unknown after import, with tree aggregation).
    """
    self._count += 1
    tf_proto = comp.get_proto(comp).tensorflow
    input_map, names = {}, []
    if arg is not None:
      names = tensorflow_utils.extract_tensor_names_from_binding(tf_proto.parameter)
      values = [tf.data.experimental.to_variant(v) if isinstance(v, tf.data.Dataset)
                else v for v in _flat_tensors(arg)]
      if len(names) != len(values):
        raise TypeError(f'{len(values)} values for {len(names)} parameters of a '
                        f'computation of type {comp.type_signature}')
      input_map = graph_utils.add_control_dep_mappings(dict(zip(names, values)))
    if tf_proto.session_token_tensor_name:
      input_map[tf_proto.session_token_tensor_name] = self.token
    outputs = tensorflow_utils.extract_tensor_names_from_binding(tf_proto.result)
    init_op = tf_proto.initialize_op
    graph_def = tensorflow_utils._uniquify_shared_names_with_suffix(  # pylint: disable=protected-access
        serialization_utils.unpack_graph_def(tf_proto.graph_def), f'_mrf{self._count}')
    with self.graph.as_default():
      if self.pin_draws:
        input_map.update(_pin_draws(graph_def))
      if replace is not None:
        input_map.update(graph_utils.add_control_dep_mappings(replace(graph_def, names)))
      imported = tf.graph_util.import_graph_def(
          graph_def, input_map, outputs + ([init_op] if init_op else []),
          name='subcomputation')
    if init_op:
      self._init_ops.append(imported.pop())
    return structure.pack_sequence_as(
        _type_template(comp.type_signature.result), imported)

  def finalize(self):
    with self.graph.as_default():
      self.init = tf.group(*self._init_ops) if self._init_ops else None
    self.graph.finalize()
    self.session = tf.compat.v1.Session(graph=self.graph, config=self._config)

  def make_callable(self, fetches: list, feeds: list, init: bool = True):
    """A function of the values of `feeds` (in order) running init, then `fetches`
    (`init=False`: only `fetches`, which then must not read the graph's variables).

    `Session.make_callable` skips the per-call feed-dict handling of `Session.run`;
    the init call is fed only the placeholders it depends on (usually none), which
    makes it several times cheaper.
    """
    feeds = list(feeds) + [self.token]
    run = self.session.make_callable(fetches, feeds)
    if self.init is None or not init:
      return lambda *values: run(*values, _SESSION_TOKEN)
    needed = _placeholders_reached(self.init)
    init_positions = [i for i, t in enumerate(feeds) if t.op in needed]
    if len(init_positions) != len(needed):
      raise ValueError('The init op depends on placeholders that are not fed.')
    init = self.session.make_callable(self.init, [feeds[i] for i in init_positions])

    def call(*values):
      values = values + (_SESSION_TOKEN,)
      init(*[values[i] for i in init_positions])
      return run(*values)

    return call

  def run(self, fetches, feed):
    feed = dict(feed)
    feed[self.token] = _SESSION_TOKEN
    if self.init is not None:
      self.session.run(self.init, feed)
    return self.session.run(fetches, feed)

  def close(self):
    if self.session is not None:
      self.session.close()


def ops_reached(ops) -> set:
  """The ops that `ops` depend on (themselves included), through data and control
  inputs."""
  seen, stack = set(), list(ops)
  while stack:
    current = stack.pop()
    if current in seen:
      continue
    seen.add(current)
    stack.extend(t.op for t in current.inputs)
    stack.extend(current.control_inputs)
  return seen


def _placeholders_reached(op) -> set:
  """The placeholder ops that `op` depends on, through data and control inputs."""
  return {o for o in ops_reached([op]) if o.type == 'Placeholder'}


def default_parallel() -> int:
  """Client groups run at once: `TF_NUM_INTRAOP_THREADS` if set (a sweep sets it to
  each point's share of the cores), else the number of cores."""
  value = os.environ.get('TF_NUM_INTRAOP_THREADS', '')
  return int(value) if value.isdigit() and int(value) > 0 else (os.cpu_count() or 1)


def _checked_parallel(groups: int, parallel: Optional[int]) -> int:
  """Groups run at once (at most `groups`; None: `default_parallel`), both checked."""
  if groups < 1:
    raise ValueError(f'groups must be >= 1. Found {groups}.')
  parallel = min(groups, parallel or default_parallel())
  if parallel < 1:
    raise ValueError(f'parallel must be >= 1. Found {parallel}.')
  return parallel


def _flat_tensors(value) -> list:
  if isinstance(value, structure.Struct):
    return structure.flatten(value)
  return [value]


class MapReduceRunner:
  """`next(state, client_data)` of a `tff.learning.templates.LearningProcess`, in-process.

  `client_data` is a list of in-memory arrays per client, `(x, y)`, from which each
  client's dataset is built inside the graph by `dataset_fn(x, y)` (a function of two
  tensors returning the `tf.data.Dataset` the process expects), or `(x, y, max_steps)`
  to let the client take only its first `max_steps` batches (-1: all).
  """

  # Whether the clients run through TFF's client graph (`_ClientStep`, a session per
  # group); a subclass that runs them otherwise overrides `accumulate_group`.
  _CLIENT_STEPS = True

  def __init__(self, process, dataset_fn, *, groups: int = 2,
               parallel: Optional[int] = None, pin_draws: bool = False,
               secure_protocol: Optional[secagg.Parameters] = None):
    """`pin_draws`: tests only, the clients' draws a fixed sequence (`_pin_draws`).
    `secure_protocol`: SecAgg+'s parameters (None: secure sums in the clear)."""
    parallel = _checked_parallel(groups, parallel)
    self._state_type = process.next.type_signature.result.state.member
    self._metrics_type = process.next.type_signature.result.metrics.member
    mrf = tff.backends.mapreduce.get_map_reduce_form_for_computation(process.next)
    self._mrf = mrf

    # Server side: prepare, zero, merge, report, update, in one graph.
    server = _Imported()
    self._server = server
    state_ph = server.placeholders('state', mrf.prepare.type_signature.parameter)
    self._state_feeds = _flat_tensors(state_ph)
    with server.graph.as_default():
      self._broadcast = _flat_tensors(server.call(mrf.prepare, state_ph))
      self._zero = _flat_tensors(server.call(mrf.zero, None))
    update_type = mrf.update.type_signature.parameter
    agg_ph = server.placeholders('aggregate', update_type[1])
    self._agg_feeds = _flat_tensors(agg_ph)
    report_type = mrf.report.type_signature.parameter
    acc_ph = server.placeholders('accumulator', report_type)
    self._acc_feeds = _flat_tensors(acc_ph)
    other_ph = server.placeholders('other_accumulator', report_type)
    self._other_feeds = _flat_tensors(other_ph)
    with server.graph.as_default():
      self._merged = _flat_tensors(
          server.call(mrf.merge, structure.Struct.unnamed(acc_ph, other_ph)))
      self._report = _flat_tensors(server.call(mrf.report, acc_ph))
      new_state, metrics = server.call(mrf.update, structure.Struct.unnamed(
          state_ph, agg_ph))
      self._new_state = _flat_tensors(new_state)
      self._metrics = _flat_tensors(metrics)
      secure = [mrf.secure_sum_bitwidth, mrf.secure_sum_max_input,
                mrf.secure_modular_sum_modulus]
      self._secure_params = [_flat_tensors(server.call(c, None)) for c in secure]
      init = tff.backends.mapreduce.get_state_initialization_computation(
          process.initialize)
      self._init_state = _flat_tensors(server.call(init, None))
    server.finalize()

    self.num_groups = groups
    self.secure_protocol = secure_protocol
    self._groups = ([_ClientStep(mrf, dataset_fn, pin_draws) for _ in range(groups)]
                    if self._CLIENT_STEPS else [])
    self._pool = (concurrent.futures.ThreadPoolExecutor(parallel)
                  if parallel > 1 else None)
    # `(broadcast, acc, secure_params, groups) -> [accumulate_group's result per group]`
    # when the groups run elsewhere (`fl_analytics.engines.ray_actors`: on Ray actors).
    self.group_executor = None
    # Bytes one client sends per round: its `work` output (the update as the aggregator
    # encodes it, the count, the metrics' sums, the secure-sum inputs), from the tensor
    # types of the compiled `work`, which fix every shape, at the dtype the computation
    # holds each tensor in (for secure-sum inputs that is wider than the protocol's bit
    # width). None if a shape is not fully known. The same for every client and round.
    self.sent_bytes: Optional[int] = _type_bytes(mrf.work.type_signature.result)

  def initialize(self):
    """The process's `initialize`, run from its compiled form."""
    return _to_container(self._server.run(self._init_state, {}), self._state_type)

  @staticmethod
  def get_model_weights(state):
    """As the process's `get_model_weights` (composed processes: a state field)."""
    return state.global_model_weights

  @staticmethod
  def set_model_weights(state, model_weights):
    """As `set_model_weights` of TFF's composed processes (`composers.py`)."""
    return state._replace(global_model_weights=model_weights)

  def next(self, state, client_data: Sequence[tuple[np.ndarray, np.ndarray]], *,
           dropouts: Optional[secagg.Dropouts] = None):
    """One round; returns `(new_state, metrics)` in the process's Python containers.

    `dropouts`: with `secure_protocol`, who else of the cohort drops out of it when
    (`after_input`: positions among the clients, in the order the groups merge them;
    which clients they are does not change the sum)."""
    flat_state = _flatten_value(state)
    server_feed = dict(zip(self._state_feeds, flat_state))
    broadcast, acc, secure_params = self._server.run(
        [self._broadcast, self._zero, self._secure_params], server_feed)
    acc, secure_sums = self._accumulate_clients(broadcast, acc, secure_params, client_data)
    if isinstance(secure_sums, PerClient):
      secure_values, _ = protocol_sum(
          secure_sums, secure_params, self.secure_protocol, dropouts or secagg.Dropouts())
    else:
      # secure_sum_bitwidth and secure_sum: plain sums; secure_modular_sum: mod modulus.
      modular = [t % np.asarray(m, np.int64)
                 for t, m in zip(secure_sums[2], secure_params[2])]
      secure_values = secure_sums[0] + secure_sums[1] + modular
    report = self._server.run(self._report, dict(zip(self._acc_feeds, acc)))
    agg_values = list(report) + [
        v.astype(t.dtype.as_numpy_dtype) for v, t in
        zip(secure_values, self._agg_feeds[len(report):])]
    new_state, metrics = self._server.run(
        [self._new_state, self._metrics],
        {**server_feed, **dict(zip(self._agg_feeds, agg_values))})
    return (_to_container(new_state, self._state_type),
            _to_container(metrics, self._metrics_type))

  def _accumulate_clients(self, broadcast, acc, secure_params, client_data):
    """The accumulator after every client (from `acc`, the aggregation's zero) and the
    totals of the clients' secure-sum inputs: clients in fixed groups, merged in order."""
    groups = self.groups_of(client_data)
    if self.group_executor is not None:
      results = self.group_executor(broadcast, acc, secure_params, groups)
    else:
      def run_group(g):
        return self.accumulate_group(broadcast, acc, secure_params, groups[g], g)

      indexes = range(self.num_groups)
      results = (list(self._pool.map(run_group, indexes)) if self._pool is not None
                 else [run_group(g) for g in indexes])
    return self.merge(results)

  def merge(self, results: Sequence) -> tuple:
    """`(accumulator, secure-sum totals)` of several parts, in order: the accumulators
    with TFF's `merge`, the totals added (the clients' inputs listed in order, with
    the protocol)."""
    acc, secure_sums = results[0]
    for acc_g, secure_g in results[1:]:
      acc = self._server.run(self._merged, {**dict(zip(self._acc_feeds, acc)),
                                            **dict(zip(self._other_feeds, acc_g))})
      secure_sums = (PerClient(secure_sums + secure_g) if isinstance(secure_sums, PerClient)
                     else [[a + b for a, b in zip(x, y)]
                           for x, y in zip(secure_sums, secure_g)])
    return acc, secure_sums

  def zero_secure(self, secure_params):
    """A group's empty secure-sum totals (`zero_secure`; per client with the protocol)."""
    return PerClient() if self.secure_protocol is not None else zero_secure(secure_params)

  def groups_of(self, clients: Sequence) -> list:
    """`clients` in their groups: client k in group k % groups, whatever runs them
    (fixed sums)."""
    return [clients[g::self.num_groups] for g in range(self.num_groups)]

  def accumulate_group(self, broadcast, acc, secure_params, client_data, g: int = 0):
    """One group's clients, in order, from `acc`: `(accumulator, secure-sum totals)`.

    `g`: which of this runner's sessions runs it (groups run side by side)."""
    acc_g, secure_g = acc, self.zero_secure(secure_params)
    for x, y, *max_steps in client_data:
      acc_g, secure = self._groups[g].run(
          broadcast, acc_g, x, y, max_steps[0] if max_steps else -1)
      add_secure(secure_g, secure)
    return acc_g, secure_g

  def close(self):
    if self._pool is not None:
      self._pool.shutdown()
    self._server.close()
    for group in self._groups:
      group.close()


def client_graph(graph: _Imported, mrf, dataset, broadcast, replace=None):
  """Stamps one client's `work` fused with `accumulate` into `graph`, on `dataset` and
  the `broadcast` placeholders (made with `graph.placeholders`); `replace` as in
  `_Imported.call`. Returns the accumulator's placeholders and its new value (flat),
  and the inputs of secure_sum_bitwidth, secure_sum and secure_modular_sum."""
  acc = graph.placeholders('acc_in', mrf.accumulate.type_signature.parameter[0])
  with graph.graph.as_default():
    out = graph.call(mrf.work, structure.Struct.unnamed(dataset, broadcast), replace=replace)
    acc_out = _flat_tensors(graph.call(mrf.accumulate, structure.Struct.unnamed(acc, out[0])))
    secure = [_flat_tensors(out[i]) if out[i] else [] for i in (1, 2, 3)]
  return _flat_tensors(acc), acc_out, secure


def client_arrays(graph: _Imported, mrf):
  """Placeholders of one client's whole arrays (x, y), as the work's dataset batches."""
  element = mrf.work.type_signature.parameter[0].element
  with graph.graph.as_default():
    return (tf.compat.v1.placeholder(element[0].dtype, element[0].shape, name='x'),
            tf.compat.v1.placeholder(element[1].dtype, element[1].shape, name='y'))


def zero_secure(secure_params) -> list:
  """Zero totals of each secure sum's inputs (int64, shaped as its parameters)."""
  return [[np.zeros_like(np.asarray(v), dtype=np.int64) for v in params]
          for params in secure_params]


def _modulus(kind: int, param: int, clients: int) -> int:
  """The protocol's modulus for one coordinate of TFF secure sum `kind` (0: bitwidth,
  1: max_input, 2: modular) over `clients` inputs: large enough that the sum mod R is
  the plain sum (0, 1), or the sum's own modulus (2)."""
  modulus = (2**(param + (clients - 1).bit_length()) if kind == 0 else
             2**((clients * param).bit_length()) if kind == 1 else param)
  if not 2 <= modulus <= secagg.MAX_MODULUS:
    raise ValueError(f'The SecAgg protocol sums modulo at most 2^63; {clients} inputs of '
                     f'this secure sum need a modulus of {modulus}.')
  return modulus


def protocol_sum(per_client: 'PerClient', secure_params, parameters: secagg.Parameters,
                 dropouts: secagg.Dropouts) -> tuple[list, Optional[secagg.Costs]]:
  """The secure sums' values as the simulated path gives them (plain sums, and the
  modular sums mod their modulus), from the SecAgg+ protocol over each client's
  inputs, and what the round cost. With no client the sums are zero and no protocol
  runs (there is nothing to hide)."""
  zeros = zero_secure(secure_params)
  if not per_client:
    return zeros[0] + zeros[1] + [
        t % np.asarray(m, np.int64) for t, m in zip(zeros[2], secure_params[2])], None
  n, first = len(per_client), per_client[0]
  moduli, shapes, modular = [], [], []
  for kind, params in enumerate(secure_params):
    for j, param in enumerate(params):
      shape = np.shape(first[kind][j])
      modular.append(np.full(int(np.prod(shape, dtype=np.int64)), kind == 2))
      unique, inverse = np.unique(np.broadcast_to(np.asarray(param, np.int64), shape),
                                  return_inverse=True)
      moduli.append(np.array([_modulus(kind, int(u), n) for u in unique],
                             np.uint64)[inverse].reshape(-1))
      shapes.append(shape)
  flat_moduli, modular = np.concatenate(moduli), np.concatenate(modular)
  inputs = []
  for client in per_client:
    values = np.concatenate([np.asarray(v, np.int64).reshape(-1)
                             for part in client for v in part])
    # A modular sum's inputs reduced first (the same sum mod m); the others are in
    # range by TFF's contract, checked.
    values = np.where(modular, np.mod(values, flat_moduli.astype(np.int64)), values)
    if np.any(values < 0) or np.any(values.astype(np.uint64) >= flat_moduli):
      raise ValueError('A secure-sum input is outside the range its bit width or bound '
                       'allows; the protocol cannot sum it exactly.')
    inputs.append(values.astype(np.uint64))
  edges = np.flatnonzero(np.diff(flat_moduli)) + 1
  starts, ends = np.concatenate([[0], edges]), np.concatenate([edges, [len(flat_moduli)]])
  layout = secagg.Layout(tuple((int(e - b), int(flat_moduli[b]))
                               for b, e in zip(starts, ends)))
  outcome = secagg.run_cohort(inputs, layout, parameters, dropouts)
  values, start = [], 0
  for shape in shapes:
    size = int(np.prod(shape, dtype=np.int64))
    values.append(outcome.total[start:start + size].astype(np.int64).reshape(shape))
    start += size
  return values, outcome.costs


class PerClient(list):
  """Each client's secure-sum inputs, in order, for the protocol to sum."""


def add_secure(totals: list, secure: list) -> None:
  """Adds one client's secure-sum inputs to `totals` (`zero_secure`, or `PerClient`:
  appended), in place."""
  if isinstance(totals, PerClient):
    totals.append([[np.asarray(v, np.int64) for v in part] for part in secure])
    return
  for part, values in zip(totals, secure):
    for j, v in enumerate(values):
      part[j] = part[j] + np.asarray(v, np.int64)


class _ClientStep:
  """One client's `work` feeding `accumulate`, in one graph and one session run."""

  def __init__(self, mrf, dataset_fn, pin_draws: bool = False):
    graph = _Imported(pin_draws)
    self._graph = graph
    broadcast = graph.placeholders('broadcast', mrf.work.type_signature.parameter[1])
    self._broadcast = _flat_tensors(broadcast)
    # The client's whole arrays; `dataset_fn` batches them as the process expects.
    self._x, self._y = client_arrays(graph, mrf)
    with graph.graph.as_default():
      self._max_steps = tf.compat.v1.placeholder_with_default(
          tf.constant(-1, tf.int64), [], name='max_steps')
      dataset = dataset_fn(self._x, self._y).take(self._max_steps)
    self._acc_in, self._acc_out, secure = client_graph(graph, mrf, dataset, broadcast)
    graph.finalize()
    self._secure_sizes = [len(s) for s in secure]
    self._num_acc = len(self._acc_out)
    self._call = graph.make_callable(
        self._acc_out + [t for s in secure for t in s],
        self._broadcast + self._acc_in + [self._x, self._y, self._max_steps])

  def run(self, broadcast, acc, x, y, max_steps=-1):
    """The accumulator after this client, and its secure-sum inputs."""
    out = self._call(*broadcast, *acc, x, y, max_steps)
    return out[:self._num_acc], split(out[self._num_acc:], self._secure_sizes)

  def close(self):
    self._graph.close()


def split(values: Sequence, sizes: Sequence[int]) -> list:
  """`values` cut into consecutive parts of `sizes` (a client step's secure-sum inputs:
  those of secure_sum_bitwidth, secure_sum and secure_modular_sum)."""
  parts, start = [], 0
  for size in sizes:
    parts.append(list(values[start:start + size]))
    start += size
  return parts


def _type_bytes(type_spec) -> Optional[int]:
  """Bytes of the tensors of a TFF type; None if a shape is not fully known."""
  if isinstance(type_spec, tff.TensorType):
    if type_spec.shape is None or any(d is None for d in type_spec.shape):
      return None
    return int(np.prod(type_spec.shape, dtype=np.int64)) * np.dtype(type_spec.dtype).itemsize
  total = 0
  for _, element in structure.iter_elements(type_spec):
    size = _type_bytes(element)
    if size is None:
      return None
    total += size
  return total


def _to_container(flat: list, type_spec) -> Any:
  template = _type_template(type_spec)
  # Strings stay bytes, as TFF's runtimes return them.
  packed = structure.pack_sequence_as(template, list(flat))
  return type_conversions.type_to_py_container(packed, type_spec)


def _type_template(type_spec):
  if isinstance(type_spec, tff.StructType):
    return structure.Struct([(name, _type_template(t))
                             for name, t in structure.iter_elements(type_spec)])
  return 0
