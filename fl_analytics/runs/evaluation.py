"""Evaluation beyond pooled metrics, on held-out users, after the last round.

* Per-user metrics: each held-out user's log loss and accuracy (top-1 for next action),
  their percentiles over users, and the share of users for whom the model does worse
  than a trivial baseline: a constant prediction at the held-out label frequencies (the
  churn base rate; the frequency of each action) for the log loss, always the most
  frequent label ("no churn"; the most frequent action) for accuracy. A pooled metric
  can hide users the model serves badly.
* Calibration (churn): predicted churn probability against the observed churn rate in ten
  equal-width bins (a reliability diagram), and the expected calibration error (ECE,
  the bins' count-weighted mean |observed - predicted|). DP noise and clipping can
  leave a model that ranks well and is still over- or under-confident.
* Personalization: each held-out user's examples are split in time, the first half
  (their early days) fine-tunes the global model for `steps` local SGD steps, and both
  models are scored on the second half (their later days). This is the protocol of
  `tff.learning.algorithms.build_personalization_eval_computation` (fine-tune on a
  client's train split, evaluate on its test split, report beside the global model),
  run here in plain TensorFlow on the Keras model: the held-out users are evaluated
  in simulation, where the TFF runtime would add nothing but cost.

`evaluate_run` writes `calibration.csv` into the run directory and returns the result
that `recording.RunRecorder.finish` writes to `evaluation.json` last, after drawing
`figures/calibration.png`, so a run whose figure failed is not taken as evaluated.

Per-user rows (`eval_users.csv`) are written only with `evaluation.per_user_rows`:
held-out users are not protected by the DP guarantee, and a row's values (examples,
losses) can be linked back to a user by whoever holds the data. When written, the rows
are in an order drawn from the operating system's randomness and carry no user index,
so the file's order does not give the users away; their contents still can.
"""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence

import numpy as np

from fl_analytics.tasks import metrics
from fl_analytics.core import rundir

PERCENTILES = (10, 25, 50, 75, 90)
USER_COLUMNS = ('examples', 'loss', 'baseline_loss', 'accuracy',
                'baseline_accuracy', 'later_examples', 'global_later_loss',
                'personalized_later_loss')
CALIBRATION_COLUMNS = ('bin_low', 'bin_high', 'count', 'mean_predicted', 'observed_rate')


def label_frequencies(labels: np.ndarray, num_classes: int) -> np.ndarray:
  """Frequencies of the integer labels 0..num_classes-1 (the constant baseline)."""
  counts = np.bincount(np.asarray(labels).reshape(-1).astype(np.int64),
                       minlength=num_classes)
  return counts / max(1, counts.sum())


def per_user_rows(logits_per_user: Sequence[np.ndarray],
                  labels_per_user: Sequence[np.ndarray], *,
                  frequencies: np.ndarray) -> list[dict[str, Any]]:
  """One row per user: the model's and the constant baseline's log loss and accuracy.

  `frequencies`: the baseline's prediction, the held-out label frequencies (for a
  binary task, `[1 - base rate, base rate]`).
  """
  log_freq = np.log(np.clip(frequencies, 1e-6, 1.0))
  majority = int(np.argmax(frequencies))
  rows = []
  for z, y in zip(logits_per_user, labels_per_user):
    loss, correct = metrics.loss_and_correct(z, y)
    y = np.asarray(y).reshape(-1).astype(np.int64)
    rows.append({
        'examples': len(y), 'loss': float(loss.mean()),
        'baseline_loss': float(-log_freq[y].mean()), 'accuracy': float(correct.mean()),
        'baseline_accuracy': float(np.mean(y == majority)),
    })
  return rows


def summarize_users(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
  """Percentiles over users and the shares worse than the baseline."""
  if not rows:
    raise ValueError('No held-out user has an example; nothing to evaluate per user.')
  loss = np.array([r['loss'] for r in rows])
  acc = np.array([r['accuracy'] for r in rows])
  return {
      'users': len(rows),
      'loss_percentiles': {f'p{p}': float(np.percentile(loss, p)) for p in PERCENTILES},
      'accuracy_percentiles': {f'p{p}': float(np.percentile(acc, p)) for p in PERCENTILES},
      'share_worse_than_baseline_loss': float(np.mean(
          loss > np.array([r['baseline_loss'] for r in rows]))),
      'share_worse_than_baseline_accuracy': float(np.mean(
          acc < np.array([r['baseline_accuracy'] for r in rows]))),
  }


def calibration_bins(logits: np.ndarray, labels: np.ndarray,
                     num_bins: int = 10) -> tuple[list[dict[str, Any]], float]:
  """Reliability bins of predicted probability and the expected calibration error."""
  p = 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64).reshape(-1)))
  y = np.asarray(labels, np.float64).reshape(-1)
  edges = np.linspace(0.0, 1.0, num_bins + 1)
  which = np.clip(np.digitize(p, edges[1:-1]), 0, num_bins - 1)
  bins, ece = [], 0.0
  for b in range(num_bins):
    mask = which == b
    count = int(mask.sum())
    row = {'bin_low': float(edges[b]), 'bin_high': float(edges[b + 1]), 'count': count,
           'mean_predicted': float(p[mask].mean()) if count else None,
           'observed_rate': float(y[mask].mean()) if count else None}
    if count:
      ece += count / len(y) * abs(row['observed_rate'] - row['mean_predicted'])
    bins.append(row)
  return bins, float(ece)


def split_in_time(x: np.ndarray, y: np.ndarray):
  """A user's early half (fine-tuning) and later half (evaluation), by example order."""
  half = len(y) // 2
  return (x[:half], y[:half]), (x[half:], y[half:])


def personalization_batches(num_examples: int, *, steps: int, batch_size: int, seed: int,
                            index: int) -> list[np.ndarray]:
  """The example indices of each SGD step of user `index`'s personalization: cyclic
  batches over one seeded shuffle of its early examples (the device does the same,
  `fl_analytics.export.tflite`)."""
  order = np.random.default_rng([seed, 0x9E45, index]).permutation(num_examples)
  batches = []
  for step in range(steps):
    start = (step * batch_size) % len(order)
    batches.append(np.take(order, range(start, start + batch_size), mode='wrap')[
        :min(batch_size, len(order))])
  return batches


def personalize(task, keras_model, global_weights: Sequence[np.ndarray],
                users: Sequence[tuple[np.ndarray, np.ndarray]], *, steps: int,
                learning_rate: float, batch_size: int, seed: int,
                keep_weights: bool = False) -> list[Optional[tuple]]:
  """For each user with >= 4 examples: (later labels, global logits, personalized logits),
  and with `keep_weights` the personalized trainable weights.

  Users with fewer examples get None (nothing to both fine-tune on and score).
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  variables = keras_model.trainable_variables
  loss_fn = task.loss()

  @tf.function(reduce_retracing=True)
  def sgd_step(x, y):
    with tf.GradientTape() as tape:
      loss = loss_fn(y, keras_model(x, training=True))
    for v, g in zip(variables, tape.gradient(loss, variables)):
      v.assign_sub(learning_rate * tf.convert_to_tensor(g))  # embeddings: IndexedSlices

  results = []
  for index, (x, y) in enumerate(users):
    if len(y) < 4:
      results.append(None)
      continue
    (x_early, y_early), (x_later, y_later) = split_in_time(x, y)
    keras_model.set_weights(list(global_weights))
    global_logits = keras_model(x_later, training=False).numpy()
    for batch in personalization_batches(len(y_early), steps=steps,
                                         batch_size=batch_size, seed=seed, index=index):
      sgd_step(tf.constant(x_early[batch]), tf.constant(y_early[batch]))
    results.append((y_later, global_logits, keras_model(x_later, training=False).numpy())
                   + ((tuple(v.numpy() for v in variables),) if keep_weights else ()))
  keras_model.set_weights(list(global_weights))
  return results


def evaluate_run(task, keras_model, global_weights: Sequence[np.ndarray],
                 users: Sequence[tuple[np.ndarray, np.ndarray]], workdir: str, *,
                 round_num: int, personalization_steps: int, learning_rate: float,
                 batch_size: int, seed: int, write_user_rows: bool = False
                 ) -> dict[str, Any]:
  """Per-user metrics, calibration (tasks that `calibrates`) and personalization of `task`
  (`fl_analytics.tasks`); writes `calibration.csv` (and, with `write_user_rows`,
  `eval_users.csv`) and returns what belongs in `evaluation.json`."""
  keras_model.set_weights(list(global_weights))
  logits = [keras_model(x, training=False).numpy() for x, _ in users]
  labels = [y for _, y in users]
  all_logits, all_labels = np.concatenate(logits), np.concatenate(labels)
  # The model's outputs: one logit per class, or one for a binary task.
  frequencies = label_frequencies(all_labels, max(2, all_logits.shape[-1]))
  rows = per_user_rows(logits, labels, frequencies=frequencies)
  result: dict[str, Any] = {
      'round': round_num,
      'per_user': summarize_users(rows),
      'baseline': task.baseline_description(frequencies),
      **task.user_baselines(users, frequencies),
  }
  bins = []
  if task.calibrates:
    bins, ece = calibration_bins(all_logits, all_labels)
    result['calibration'] = {'expected_calibration_error': ece, 'bins': len(bins)}
  if personalization_steps:
    pers = personalize(task, keras_model, global_weights, users,
                       steps=personalization_steps, learning_rate=learning_rate,
                       batch_size=batch_size, seed=seed)
    done = [(i, r) for i, r in enumerate(pers) if r is not None]
    for i, (y_later, g, p) in done:
      rows[i].update(
          later_examples=len(y_later),
          global_later_loss=float(metrics.loss_and_correct(g, y_later)[0].mean()),
          personalized_later_loss=float(metrics.loss_and_correct(p, y_later)[0].mean()))
    if done:
      y = np.concatenate([r[0] for _, r in done])
      glob = task.eval_metrics(np.concatenate([r[1] for _, r in done]), y)
      mine = task.eval_metrics(np.concatenate([r[2] for _, r in done]), y)
      result['personalization'] = {
          'steps': personalization_steps, 'learning_rate': learning_rate,
          'batch_size': batch_size, 'users': len(done),
          'protocol': ("each held-out user's first half of examples (early days) "
                       'fine-tunes the global model; both are scored on the second '
                       'half (later days), pooled'),
          'global': glob, 'personalized': mine,
          'share_of_users_improved': float(np.mean(
              [rows[i]['personalized_later_loss'] < rows[i]['global_later_loss']
               for i, _ in done])),
      }
  if write_user_rows:
    order = np.random.default_rng().permutation(len(rows))  # unseeded on purpose
    rundir.write_csv(os.path.join(workdir, rundir.USERS_FILE), USER_COLUMNS,
                     [rows[i] for i in order])
  if bins:
    rundir.write_csv(os.path.join(workdir, rundir.CALIBRATION_FILE), CALIBRATION_COLUMNS,
                     bins)
  return result
