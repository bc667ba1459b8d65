"""Canary clients inside training: the insertion half of the empirical privacy audit.

The one-shot method of Andrew, Kairouz, Oh, Oprea, McMahan and Suriyakumar ("One-shot
Empirical Privacy Estimation for Federated Learning", ICLR 2024), as its reference code
(google-research/federated `one_shot_epe/fed_avg_with_canaries.py`) inserts canaries:
`audit.canaries` = K canary clients join the population that is sampled, after the
training users (population indices `population_size - K ...`). A sampled canary goes
through the same dropout, clip, noise and accounting as a user; instead of training,
its update is a fixed random unit direction, seeded by `(seed, canary id)`, times
`SCALE`, so the mechanism's clip (fixed or adaptive) brings it to the clip norm. The
`audit.unseen_canaries` directions (ids K, K+1, ...) are never inserted: they measure
the cosine of a direction the model never saw.

How a canary travels through TFF's round without changing its types: its dataset is
one example whose label is `-(1 + id)` (`client_arrays`); real labels are >= 0. The
client work (`build_client_work`) is TFF's model-delta client work
(`build_model_delta_update_with_tff_optimizer`, the function `build_unweighted_fed_avg`
runs) on the client's batches with those of canaries filtered out, so a canary trains
on nothing and adds nothing to the training metrics; then a canary's update is replaced
by its direction. `build_process` composes it as `build_unweighted_fed_avg` does. A
run without canaries builds `build_unweighted_fed_avg` itself.

`Tracker` (NumPy) keeps the statistics: each canary's cosine with the final model delta
(initial - final weights, the sign of a client update), its largest cosine with any
round's model delta (the paper's all-iterates variant), and its cosine with the model
delta of the round it was first inserted in (`first_insertion`). The last makes the
insertions known to the auditor: every canary it scores was inserted exactly once
before that delta, in a round the auditor knows, so its statistic is not a mixture over
Poisson insertion counts; and a canary never inserted is independent of that delta, so
the null is the exact cosine distribution, as for the final model. Its canaries are
those inserted at least once. `fl_analytics.privacy.audit` turns them into the
estimates. This module imports TensorFlow only inside its functions.
"""

from __future__ import annotations

import collections
import math
from typing import Any, Optional, Sequence

import numpy as np

from fl_analytics.privacy import audit
from fl_analytics.privacy import mechanisms

# A canary's update before clipping: its unit direction times this (the reference's
# _CANARY_SCALING_FACTOR), far above any clip, so every clip makes it the clip norm.
SCALE = 10000.0
# Fewest canaries: the lower bound splits them in halves that need MIN_ABOVE each.
MIN_CANARIES = 2 * audit.MIN_ABOVE


def unseen_count(audit_config) -> int:
  """`audit.unseen_canaries`, or as many as `audit.canaries` when unset."""
  unseen = audit_config.unseen_canaries
  return audit_config.canaries if unseen is None else unseen


def check_config(config) -> None:
  """Raises ValueError for `audit.*` values no run can use, naming what is allowed."""
  a = config.audit
  for key, value in (('canaries', a.canaries), ('unseen_canaries', unseen_count(a))):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
      raise ValueError(f'audit.{key} must be an integer >= 0. Found {value!r}.')
  if not 0 < a.alpha < 1:
    raise ValueError(f'audit.alpha must be in (0, 1). Found {a.alpha!r}.')
  if not a.canaries:
    return
  if a.canaries < MIN_CANARIES or unseen_count(a) < MIN_CANARIES:
    raise ValueError(
        f'audit.canaries and audit.unseen_canaries must be 0 (no audit) or at least '
        f'{MIN_CANARIES} (the lower bound certifies on half of them). Found '
        f'{a.canaries} and {unseen_count(a)}.')
  m = mechanisms.get(config.dp.mechanism)
  if not m.canaries:
    raise ValueError(f'audit.canaries needs a mechanism that clips: dp.mechanism='
                     f'{m.name} ({m.title}) {m.canary_refusal}')


def client_arrays(x_like: np.ndarray, canary_id: int) -> tuple[np.ndarray, np.ndarray]:
  """The one example a canary client holds: zero features shaped as a row of `x_like`,
  label `-(1 + canary_id)` (real labels are >= 0)."""
  x = np.zeros((1,) + tuple(np.shape(x_like)[1:]), np.asarray(x_like).dtype)
  return x, np.full((1, 1), -(1 + canary_id), np.float32 if x.dtype.kind == 'f'
                    else np.int32)


def _unit_direction(canary_id, seed: int, dim: int):
  """The canary's unit direction in `dim` dimensions, in TensorFlow: the same stateless
  draw inside the round's graph and eagerly (`directions`)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  g = tf.random.stateless_normal(
      [dim], seed=tf.stack([tf.constant(seed, tf.int64), tf.cast(canary_id, tf.int64)]),
      dtype=tf.float32)
  return g / tf.norm(g)


def unit_direction(canary_id: int, seed: int, dim: int) -> np.ndarray:
  """The canary's unit direction as float32 NumPy: the same draw as inside the round's
  graph (a client-side engine that runs canaries itself uses it)."""
  return _unit_direction(canary_id, seed, dim).numpy()


def directions(ids: Sequence[int], dim: int, *, seed: int) -> np.ndarray:
  """The unit directions of canaries `ids`, [len(ids), dim] (float64)."""
  return np.stack([_unit_direction(i, seed, dim).numpy().astype(np.float64)
                   for i in ids]) if len(ids) else np.zeros((0, dim))


def build_client_work(model_fn, optimizer, *, seed: int, loop_implementation):
  """TFF's model-delta client work (unweighted), with canary clients (module docstring).

  The structure of `tff.learning.templates.build_model_delta_client_work`; each client
  runs `build_model_delta_update_with_tff_optimizer` on its non-canary batches.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top
  # Not exported by TFF 0.87: the client update build_unweighted_fed_avg runs.
  from tensorflow_federated.python.learning.templates import model_delta_client_work  # pylint: disable=g-import-not-at-top

  with tf.Graph().as_default():
    model = model_fn()
    metrics_aggregation_fn = tff.learning.metrics.sum_then_finalize(
        model.metric_finalizers())
  data_type = tff.SequenceType(tff.types.tensorflow_to_type(model.input_spec))
  weights_type = tff.learning.models.weights_type_from_model(model)
  initial_hparams = optimizer.get_hparams(
      optimizer.initialize(tf.TensorSpec(shape=(), dtype=tf.float32)))

  @tff.federated_computation
  def init_fn():
    return tff.federated_value(initial_hparams, tff.SERVER)

  state_type = init_fn.type_signature.result.member

  @tff.tensorflow.computation(state_type, weights_type, data_type)
  def client_update_computation(hparams, initial_weights, dataset):
    client_update = model_delta_client_work.build_model_delta_update_with_tff_optimizer(
        model_fn=model_fn, weighting=tff.learning.ClientWeighting.UNIFORM,
        loop_implementation=loop_implementation)
    label_min = lambda batch: tf.cast(tf.reduce_min(batch[1]), tf.int64)
    canary_id = dataset.reduce(
        tf.constant(-1, tf.int64),
        lambda found, batch: tf.maximum(found, -label_min(batch) - 1))
    real = dataset.filter(lambda *batch: label_min(batch) >= 0)
    result, model_output = client_update(optimizer, initial_weights, real, hparams)
    sizes = [int(np.prod(v.shape)) for v in weights_type.trainable]
    canary = tf.split(_unit_direction(canary_id, seed, sum(sizes)) * SCALE, sizes)
    update = [tf.where(canary_id >= 0, tf.reshape(c, tf.shape(u)), u)
              for c, u in zip(canary, tf.nest.flatten(result.update))]
    return (tff.learning.templates.ClientResult(
        update=tf.nest.pack_sequence_as(result.update, update),
        update_weight=result.update_weight), model_output)

  @tff.federated_computation(init_fn.type_signature.result,
                             tff.FederatedType(weights_type, tff.CLIENTS),
                             tff.FederatedType(data_type, tff.CLIENTS))
  def next_fn(state, weights, client_data):
    client_result, model_outputs = tff.federated_map(
        client_update_computation, (tff.federated_broadcast(state), weights, client_data))
    measurements = tff.federated_zip(collections.OrderedDict(
        train=metrics_aggregation_fn(model_outputs)))
    return tff.templates.MeasuredProcessOutput(state, client_result, measurements)

  return tff.learning.templates.ClientWorkProcess(init_fn, next_fn)


def build_process(model_fn, *, client_optimizer, server_optimizer, model_aggregator,
                  seed: int, loop_implementation):
  """`build_unweighted_fed_avg` with the canary client work: the same composition
  (`compose_learning_process` of broadcast, client work, the unweighted aggregator,
  the server optimizer)."""
  import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top
  # Not exported by TFF 0.87: how build_unweighted_fed_avg wraps its aggregator.
  from tensorflow_federated.python.aggregators import factory_utils  # pylint: disable=g-import-not-at-top

  @tff.tensorflow.computation()
  def initial_model_weights_fn():
    return tff.learning.models.ModelWeights.from_model(model_fn())

  weights_type = initial_model_weights_fn.type_signature.result
  aggregator = factory_utils.as_weighted_aggregator(model_aggregator).create(
      weights_type.trainable, tff.TensorType(np.float32))
  return tff.learning.templates.compose_learning_process(
      initial_model_weights_fn,
      tff.learning.templates.build_broadcast_process(weights_type),
      build_client_work(model_fn, client_optimizer, seed=seed,
                        loop_implementation=loop_implementation),
      aggregator,
      tff.learning.templates.build_apply_optimizer_finalizer(server_optimizer,
                                                             weights_type))


def flatten(weights: Sequence[Any]) -> np.ndarray:
  """Trainable weights (in the model's order) as one float64 vector."""
  return np.concatenate([np.asarray(w, np.float64).reshape(-1) for w in weights])


class Tracker:
  """The canaries' statistics over a run: updated every round, kept in checkpoints.

  Rows 0..K-1 of the directions are the inserted canaries, K..K+U-1 the unseen ones.
  """

  def __init__(self, *, canaries: int, unseen: int, initial_weights: Sequence[Any],
               seed: int):
    self.canaries, self.unseen = canaries, unseen
    self._initial = flatten(initial_weights)
    self.dim = len(self._initial)
    self._directions = directions(range(canaries + unseen), self.dim, seed=seed)
    self.max_cosines = np.full(canaries + unseen, -np.inf)
    self.times_sampled = np.zeros(canaries, np.int64)
    # Each canary's cosine with the model delta of the round it was first inserted in
    # (NaN: never inserted); the unseen canaries' with the first round's delta.
    self.first_cosines = np.full(canaries + unseen, np.nan)

  def record_round(self, previous_weights, new_weights, sampled_canaries) -> None:
    """One round: the model delta's cosines (largest so far; those of the canaries
    inserted for the first time), who was sampled."""
    delta = flatten(previous_weights) - flatten(new_weights)
    cosines = audit.cosines(self._directions, delta)
    self.max_cosines = np.maximum(self.max_cosines, cosines)
    sampled = np.asarray(sampled_canaries, np.int64)
    first = sampled[self.times_sampled[sampled] == 0]
    self.first_cosines[first] = cosines[first]
    unseen = slice(self.canaries, None)
    if np.isnan(self.first_cosines[unseen]).all():
      self.first_cosines[unseen] = cosines[unseen]
    np.add.at(self.times_sampled, sampled, 1)

  def leaves(self) -> list[np.ndarray]:
    """What a checkpoint keeps (after the server state's leaves)."""
    return [self.max_cosines, self.times_sampled, self.first_cosines]

  def restore(self, leaves: Sequence[Any]) -> None:
    max_cosines, times_sampled, first_cosines = (np.asarray(v) for v in leaves)
    if max_cosines.shape != self.max_cosines.shape or (
        times_sampled.shape != self.times_sampled.shape) or (
            first_cosines.shape != self.first_cosines.shape):
      raise ValueError('The checkpoint holds the statistics of a different number of '
                       'canaries.')
    self.max_cosines, self.times_sampled = max_cosines.astype(float), times_sampled
    self.first_cosines = first_cosines.astype(float)

  def final_cosines(self, final_weights) -> np.ndarray:
    return audit.cosines(self._directions, self._initial - flatten(final_weights))

  def report(self, final_weights, *, claimed_epsilon: Optional[float], delta: float,
             alpha: float, rounds: int,
             participation_epsilon: Optional[float] = None) -> dict[str, Any]:
    """What `audit.json` holds: each statistic's estimate against its claim. The
    first-insertion statistic knows when each canary took part, which sampling
    amplification assumes nobody does, so it is held to `participation_epsilon`
    (`statement.participation_epsilon`; None: the run's claim)."""
    k = self.canaries
    final = self.final_cosines(final_weights)
    variants = {
        'final_model': audit.estimate(final[:k], final[k:], dim=self.dim, delta=delta,
                                      alpha=alpha),
        'all_iterates': audit.estimate_empirical_null(
            self.max_cosines[:k], self.max_cosines[k:], delta=delta, alpha=alpha),
    }
    inserted = self.first_cosines[:k][self.times_sampled > 0]
    if len(inserted) >= MIN_CANARIES:
      variants['first_insertion'] = audit.estimate(
          inserted, self.first_cosines[k:], dim=self.dim, delta=delta, alpha=alpha)
    claim = math.inf if claimed_epsilon is None else claimed_epsilon
    claims = {name: claim for name in variants}
    if 'first_insertion' in claims and participation_epsilon is not None:
      claims['first_insertion'] = participation_epsilon
    flagged = [name for name, e in variants.items() if e.exceeds(claims[name])]
    return {
        'claimed_epsilon': claimed_epsilon,
        'delta': delta,
        'alpha': alpha,
        'rounds': rounds,
        'canaries': k,
        'unseen_canaries': self.unseen,
        'dimension': self.dim,
        'canary_times_sampled': {
            'mean': float(self.times_sampled.mean()),
            'min': int(self.times_sampled.min()), 'max': int(self.times_sampled.max()),
            'never': int(np.sum(self.times_sampled == 0))},
        **{name: e.as_dict(claims[name]) for name, e in variants.items()},
        **({'first_insertion_claim': claims['first_insertion']}
           if 'first_insertion' in claims else {}),
        'flagged_by': flagged,
        'verdict': 'estimate exceeds claim' if flagged else 'consistent with claim',
    }
