"""Churn: will a user be inactive for the next `data.horizon_days` days?

From features of the user's trailing `data.window_days` (`features.churn_examples`: a
count per action of the generator's vocabulary, six summaries of activity, and the
behaviour model's extras: funnel completion, recency of key actions, tenure;
`generators.churn_extras`); a one-hidden-layer MLP (`models.build_churn_model`;
logistic regression with `model.hidden_units=0`), logistic loss; held-out log loss,
accuracy, ROC AUC and the churn base rate, and a reliability diagram at the end.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np

from fl_analytics.data import features
from fl_analytics.data import generators
from fl_analytics.tasks import base
from fl_analytics.tasks import metrics
from fl_analytics.tasks import models


class Churn(base.Task):
  name = 'churn'
  title = 'Churn prediction'
  train_accuracy_key = 'binary_accuracy'
  eval_columns = ('eval_loss', 'eval_accuracy', 'eval_auc', 'eval_base_rate')
  headline = base.Metric('eval_auc', 'AUC', 'AUC', 'held-out ROC AUC', 'auc_by_round')
  accuracy = base.Metric('eval_accuracy', 'accuracy', 'accuracy', 'held-out accuracy')
  personalization = headline
  calibrates = True

  def examples_fn(self, data) -> Callable:
    """`features.churn_examples_many` at the config's window, horizon and stride."""
    return functools.partial(features.churn_examples_many, window_days=data.window_days,
                             horizon_days=data.horizon_days, stride_days=data.stride_days,
                             num_kinds=len(generators.vocabulary(data)),
                             extras=generators.churn_extras(data))

  def eval_population_note(self, y: np.ndarray) -> str:
    return f', churn base rate {y.mean():.3f}'

  def num_classes(self, config) -> int:
    del config
    return 2

  def model_kwargs(self, config) -> dict:
    return dict(num_features=_num_features(config), hidden_units=config.model.hidden_units)

  def _build_model(self, **kwargs):
    return models.build_churn_model(**kwargs)

  def _tensor_sizes(self, **kwargs) -> list[int]:
    return models.churn_tensor_sizes(**kwargs)

  def check_config(self, config) -> None:
    super().check_config(config)
    units = config.model.get('hidden_units')
    if isinstance(units, bool) or not isinstance(units, int) or units < 0:
      raise ValueError('model.hidden_units must be an integer >= 0 (0: logistic '
                       f'regression). Found {units!r}.')

  def resolved_extras(self, config) -> dict[str, Any]:
    return {'num_features': _num_features(config)}

  def input_spec(self, config):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    return (tf.TensorSpec([None, _num_features(config)], tf.float32),
            tf.TensorSpec([None, 1], tf.float32))

  def loss(self):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    return tf.keras.losses.BinaryCrossentropy(from_logits=True)

  def keras_metrics(self) -> list:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    return [tf.keras.metrics.BinaryAccuracy(threshold=0.0)]

  def eval_metrics(self, logits, labels) -> dict[str, float]:
    return metrics.binary_metrics(logits, labels)

  def baseline_description(self, frequencies) -> str:
    return (f'constant prediction at the held-out churn base rate ({frequencies[1]:.4f}) '
            'for log loss; always "no churn" for accuracy')

  def accuracy_baseline(self, summary_rows):
    return base.mean_baseline(summary_rows, 'eval_base_rate_mean', lambda b: 1 - b,
                              'always "no churn"')

  def probabilities(self, logits):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    return tf.sigmoid(logits)

  def device_features_spec(self, config) -> dict[str, Any]:
    data = config.data
    window, horizon = int(data.window_days), int(data.horizon_days)
    half, week = window // 2, min(7, window)
    vocabulary = generators.vocabulary(data)
    extras = generators.churn_extras(data)
    definitions = {f'log_count_{e}': f'log(1 + number of {e} events in the window)'
                   for e in vocabulary}
    definitions.update(extras.definitions(vocabulary, window))
    definitions.update({
        'log_sessions': 'log(1 + number of sessions started in the window)',
        'active_day_share': (f'days of the window with at least one event / {window}'),
        'last_week_active_share': (
            f'days with an event among the last {week} days of the window / {week}'),
        'recency': (f'(today - the last day with an event, within the window) / {window}'),
        'trend': (f'(days with an event among the last {half} days - days with an event '
                  f'among the {window - half} days before them) / {half}'),
        'log_events_per_session': ('log(1 + events in the window / max(sessions started '
                                   'in the window, 1))'),
    })
    spec = {
        'input': {'name': 'x', 'dtype': 'float32', 'shape': [None, _num_features(config)]},
        'output': {'probabilities': (f'[n, 1]: probability that the user has no event '
                                     f'in the next {horizon} days (churn)'),
                   'logits': '[n, 1]: the same as a logit'},
        'window_days': window,
        'horizon_days': horizon,
        'stride_days': int(data.stride_days),
        'window': (f'the {window} days ending with today (today included); score only '
                   'when the user had an event in the window'),
        'features': [{'index': i, 'name': name, 'definition': definitions[name]}
                     for i, name in enumerate(features.feature_names(vocabulary, extras))],
    }
    if extras != features.NO_EXTRAS:
      spec['extras'] = extras.to_json()
    return spec

  def examples_from_spec(self, spec, timestamps, events, *, origin_timestamp, num_days):
    return features.churn_examples(
        timestamps, events, origin_timestamp=origin_timestamp, num_days=num_days,
        window_days=spec['window_days'], horizon_days=spec['horizon_days'],
        stride_days=spec['stride_days'],
        extras=features.ChurnExtras.from_json(spec.get('extras', {})),
        num_kinds=sum(f['name'].startswith('log_count_') for f in spec['features']))


def _num_features(config) -> int:
  return features.num_features(generators.vocabulary(config.data),
                               generators.churn_extras(config.data))


TASK = Churn()
