"""What watches the round loop without being part of it: round observers.

As TFF's `tff.program` separates the training loop (`program_logic`) from what records
and releases its values (release managers), the round loop of
`fl_analytics.runs.training` runs the algorithm and tells its observers what happened:
before and after each round, what of their state a checkpoint keeps, and at the end,
what they report. The audit's canary statistics are one (`CanaryAudit`); a new
watcher is a class here, added in `training.observers_for`, and the loop does not
change.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from absl import logging
import numpy as np

from fl_analytics.privacy import audit
from fl_analytics.privacy import canaries
from fl_analytics.reporting import report as fl_report
from fl_analytics.tasks import metrics


class RoundObserver:
  """The hooks of the round loop; every one does nothing by default."""

  # The key of what `finish` returns, in `RunRecorder.finish` (e.g. 'audit').
  report_name: str = ''

  def leaves(self) -> list:
    """Arrays of this observer's state that a checkpoint keeps after the server's."""
    return []

  def restore(self, leaves: Sequence[Any]) -> None:
    """The state `leaves` returned, read back from the checkpoint of a resumed run."""
    del leaves

  def before_round(self, round_num: int, engine, state) -> None:
    del round_num, engine, state

  def after_round(self, round_num: int, engine, state, cohort) -> None:
    del round_num, engine, state, cohort

  def finish(self, final_weights, claim: dict) -> Optional[dict]:
    """What the observer reports about the run, given the final model weights and the
    privacy statement of the rounds that ran (None: nothing)."""
    del final_weights, claim
    return None


class CanaryAudit(RoundObserver):
  """The empirical audit (`audit.canaries`): the canaries' cosines with each round's
  model delta (`canaries.Tracker`, kept in checkpoints), then `audit.json`."""

  report_name = 'audit'

  def __init__(self, config, *, initial_weights, data, keras_model):
    self._config = config
    self._data = data
    self._keras_model = keras_model
    self._tracker = canaries.Tracker(
        canaries=config.audit.canaries, unseen=canaries.unseen_count(config.audit),
        initial_weights=initial_weights, seed=config.seed)
    self._previous = None

  def leaves(self) -> list:
    return self._tracker.leaves()

  def restore(self, leaves) -> None:
    self._tracker.restore(leaves)

  def before_round(self, round_num, engine, state) -> None:
    del round_num
    self._previous = engine.get_model_weights(state).trainable

  def after_round(self, round_num, engine, state, cohort) -> None:
    del round_num
    users = self._data.population_size  # indices from here on are canaries
    self._tracker.record_round(self._previous, engine.get_model_weights(state).trainable,
                               cohort.reporting[cohort.reporting >= users] - users)

  def finish(self, final_weights, claim: dict) -> dict:
    """`audit.json`: the canaries' estimate against the claim, and the loss-threshold
    membership attack on the final model (training users against as many held-out
    users as the final evaluation scored). Logs one line; warns when the canaries
    contradict the claim."""
    config, data, keras_model = self._config, self._data, self._keras_model
    report = self._tracker.report(
        final_weights.trainable, claimed_epsilon=claim['epsilon'], delta=claim['delta'],
        alpha=config.audit.alpha, rounds=claim['rounds'],
        participation_epsilon=claim.get('participation_epsilon'))
    final_weights.assign_weights_to(keras_model)
    held_out = data.eval_sample(config.evaluation.final_max_users, seed=config.seed)
    members = _training_users_like(data, len(held_out), seed=config.seed)
    report['membership_inference'] = audit.membership_inference(
        _user_losses(keras_model, members), _user_losses(keras_model, held_out))
    logging.info('%s', fl_report.audit_line(report))
    if report['flagged_by']:
      logging.warning(
          'Audit: the estimate exceeds the claim. The canaries\' epsilon lower bound '
          '(confidence %g) is above the claimed epsilon %.3g (%s): the mechanism adds '
          'less privacy than the accountant assumes. See audit.json.',
          1 - config.audit.alpha, claim['epsilon'], ', '.join(report['flagged_by']))
    return report


def _training_users_like(data, count: int, *, seed: int) -> list:
  """`count` training users with examples, in a seeded order, made 1,024 at a time."""
  members = []
  order = np.random.default_rng([seed, 0x3E3B]).permutation(data.population_size)
  for start in range(0, len(order), 1024):
    members += [xy for xy in data.train_examples_many(order[start:start + 1024])
                if len(xy[1])]
    if len(members) >= count:
      break
  return members[:count]


def _user_losses(keras_model, users) -> np.ndarray:
  """Each user's mean per-example loss under `keras_model`."""
  sizes = [len(y) for _, y in users]
  logits = keras_model(np.concatenate([x for x, _ in users]), training=False).numpy()
  losses, _ = metrics.loss_and_correct(logits, np.concatenate([y for _, y in users]))
  return np.array([chunk.mean() for chunk in np.split(losses, np.cumsum(sizes)[:-1])])
