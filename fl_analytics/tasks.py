"""The learning tasks (`task` in the config): data, model, loss and metrics of each.

* ``churn``: will a user be inactive for the next `data.horizon_days` days, from 16
  features of their trailing window (`features.churn_examples`); a one-hidden-layer
  MLP, logistic loss; held-out log loss, accuracy, ROC AUC and base rate.
* ``next_action``: a user's next action in a session from the `data.context_events`
  actions before it (`features.next_action_examples`); an embedding, a causal
  convolution and a dense layer (`models.build_next_action_model`), softmax cross
  entropy; held-out log loss, top-1 accuracy (`eval_accuracy`) and top-3 accuracy.

Everything else (federated averaging, the DP aggregators, sampling, accounting, the
run directory) is the same for both: `fl_analytics.training` asks the task only for
what differs. A task also owns how its results are shown: its `eval_*` columns, its
headline metric (AUC, top-3 accuracy) and accuracy metric with their labels, and the
accuracy of its trivial baseline. Summaries, reports and plots look these up by the
task a run recorded (`for_run`), never by which columns happen to be filled. This
module imports neither TensorFlow nor TFF.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Optional, Sequence

import numpy as np

from fl_analytics import metrics
from fl_analytics import models
from fl_analytics.data import clients
from fl_analytics.data import features
from fl_analytics.data import synthetic


@dataclasses.dataclass(frozen=True)
class Metric:
  """A held-out metric of a task: its metrics.csv column and how it is labelled."""

  column: str  # e.g. 'eval_top3_accuracy'
  label: str  # short, for tables: 'top-3'
  name: str  # in sentences: 'top-3 accuracy'
  axis_label: str  # for figures: 'held-out top-3 accuracy'
  plot_name: str = ''  # the by-round figure's file name, e.g. 'top3_accuracy_by_round'


@dataclasses.dataclass(frozen=True)
class Task:
  name: str
  title: str  # for figures
  binary: bool  # one logit per example (churn) or one per class
  train_accuracy_key: str  # the Keras metric TFF reports for training accuracy
  num_classes: int  # labels 0..num_classes-1
  eval_columns: tuple[str, ...]  # the eval_* columns of metrics.csv it fills
  headline: Metric  # what a frontier plots and a summary leads with
  accuracy: Metric  # the second panel of the frontier
  # The accuracy of the trivial baseline from summary rows, and its legend label.
  _accuracy_baseline: Callable[[Sequence[dict]], Optional[tuple[float, str]]]
  _model_kwargs: Callable[[Any], dict]
  _build_model: Callable[..., Any]
  _tensor_sizes: Callable[..., list[int]]
  _examples_fn: Callable[[Any], Callable]
  # Config keys of this task that must be positive integers.
  _positive_int_keys: tuple[str, ...] = ()

  def check_config(self, config) -> None:
    """Raises ValueError naming a bad task-specific config value."""
    for key in self._positive_int_keys:
      section, name = key.split('.')
      value = config[section].get(name)
      if not isinstance(value, int) or value < 1:
        raise ValueError(f'{key} must be a positive integer for task={self.name}. '
                         f'Found {value!r}.')

  def accuracy_baseline(self, summary_rows: Sequence[dict]
                        ) -> Optional[tuple[float, str]]:
    """(accuracy, name) of always predicting the most frequent label; None if unknown."""
    return self._accuracy_baseline(summary_rows)

  @property
  def chance_loss(self) -> float:
    """The log loss of predicting every class with equal probability: about where an
    untrained model starts (the divergence check's reference)."""
    return math.log(self.num_classes)

  def model_kwargs(self, config) -> dict:
    return self._model_kwargs(config)

  def build_model(self, config):
    return self._build_model(**self.model_kwargs(config), seed=config.seed)

  def tensor_sizes(self, config) -> list[int]:
    """Elements of each trainable tensor (what the secure sum and compression bound)."""
    return self._tensor_sizes(**self.model_kwargs(config))

  def build_data(self, config) -> clients.FederatedData:
    return clients.build_data(config.data, seed=config.data.seed,
                              opt_out=config.clients.opt_out,
                              examples_fn=self._examples_fn(config.data))

  def input_spec(self, config):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    if self.binary:
      return (tf.TensorSpec([None, features.NUM_FEATURES], tf.float32),
              tf.TensorSpec([None, 1], tf.float32))
    return (tf.TensorSpec([None, config.data.context_events], tf.int32),
            tf.TensorSpec([None, 1], tf.int32))

  def loss(self):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    if self.binary:
      return tf.keras.losses.BinaryCrossentropy(from_logits=True)
    return tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)

  def keras_metrics(self) -> list:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    if self.binary:
      return [tf.keras.metrics.BinaryAccuracy(threshold=0.0)]
    return [tf.keras.metrics.SparseCategoricalAccuracy()]

  def model_fn(self, config) -> Callable:
    """A no-argument function returning a fresh `tff.learning.models.VariableModel`."""
    import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top

    input_spec = self.input_spec(config)

    def model_fn():
      return tff.learning.models.from_keras_model(
          self.build_model(config), loss=self.loss(), input_spec=input_spec,
          metrics=self.keras_metrics())

    return model_fn

  def eval_metrics(self, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Pooled held-out metrics; their keys are the `eval_*` columns of metrics.csv."""
    if self.binary:
      return metrics.binary_metrics(logits, labels)
    return metrics.multiclass_metrics(logits, labels, top_k=3)


CHURN = Task(
    name='churn', title='Churn prediction', binary=True, train_accuracy_key='binary_accuracy', num_classes=2,
    eval_columns=('eval_loss', 'eval_accuracy', 'eval_auc', 'eval_base_rate'),
    headline=Metric('eval_auc', 'AUC', 'AUC', 'held-out ROC AUC', 'auc_by_round'),
    accuracy=Metric('eval_accuracy', 'accuracy', 'accuracy', 'held-out accuracy'),
    _accuracy_baseline=lambda rows: _mean_baseline(
        rows, 'eval_base_rate_mean', lambda base: 1 - base, 'always "no churn"'),
    _model_kwargs=lambda c: dict(num_features=features.NUM_FEATURES,
                                 hidden_units=c.model.hidden_units),
    _build_model=models.build_churn_model,
    _tensor_sizes=models.churn_tensor_sizes,
    _examples_fn=clients.churn_examples_fn)

NEXT_ACTION = Task(
    name='next_action', title='Next-action prediction', binary=False, train_accuracy_key='sparse_categorical_accuracy',
    num_classes=len(synthetic.EVENT_VOCAB),
    eval_columns=('eval_loss', 'eval_accuracy', 'eval_top3_accuracy',
                  'eval_majority_accuracy'),
    headline=Metric('eval_top3_accuracy', 'top-3', 'top-3 accuracy',
                    'held-out top-3 accuracy', 'top3_accuracy_by_round'),
    accuracy=Metric('eval_accuracy', 'top-1', 'top-1 accuracy', 'held-out top-1 accuracy'),
    _accuracy_baseline=lambda rows: _mean_baseline(
        rows, 'eval_majority_accuracy_mean', lambda acc: acc,
        'always the most frequent action'),
    _model_kwargs=lambda c: dict(vocab_size=len(synthetic.EVENT_VOCAB),
                                 context=c.data.context_events,
                                 embedding_dim=c.model.embedding_dim,
                                 filters=c.model.filters, kernel_size=c.model.kernel_size),
    _build_model=models.build_next_action_model,
    _tensor_sizes=models.next_action_tensor_sizes,
    _examples_fn=clients.next_action_examples_fn,
    _positive_int_keys=('data.context_events', 'data.max_examples_per_user',
                        'model.embedding_dim', 'model.filters', 'model.kernel_size'))

TASKS = {t.name: t for t in (CHURN, NEXT_ACTION)}
# metrics.csv's eval columns: every task's, in a fixed order (one file format).
EVAL_COLUMNS = tuple(dict.fromkeys(c for t in TASKS.values() for c in t.eval_columns))


def get(name: str) -> Task:
  if name not in TASKS:
    raise ValueError(f'task must be one of {", ".join(TASKS)}. Found {name!r}.')
  return TASKS[name]


def for_run(config: dict) -> Task:
  """The task of a recorded run (its config.json; runs from before `task`: churn)."""
  return get(config.get('task', 'churn'))


def _mean_baseline(rows, column, transform, label) -> Optional[tuple[float, str]]:
  values = [r[column] for r in rows
            if r.get(column) is not None and math.isfinite(r[column])]
  if not values:
    return None
  return transform(float(np.mean(values))), label
