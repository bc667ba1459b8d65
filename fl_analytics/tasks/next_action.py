"""Next action: a user's next action in a session, from the `data.context_events`
actions before it (`features.next_action_examples`).

An embedding, a causal convolution and a dense layer (`models.build_next_action_model`),
softmax cross entropy; held-out log loss, top-1 accuracy (`eval_accuracy`), top-3
accuracy and the accuracy of always predicting the most frequent action.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from fl_analytics.data import features
from fl_analytics.data import generators
from fl_analytics.tasks import base
from fl_analytics.tasks import metrics
from fl_analytics.tasks import models


class NextAction(base.Task):
  name = 'next_action'
  title = 'Next-action prediction'
  train_accuracy_key = 'sparse_categorical_accuracy'
  eval_columns = ('eval_loss', 'eval_accuracy', 'eval_top3_accuracy',
                  'eval_majority_accuracy')
  headline = base.Metric('eval_top3_accuracy', 'top-3', 'top-3 accuracy',
                         'held-out top-3 accuracy', 'top3_accuracy_by_round')
  accuracy = base.Metric('eval_accuracy', 'top-1', 'top-1 accuracy',
                         'held-out top-1 accuracy')
  personalization = accuracy
  positive_int_keys = ('data.context_events', 'data.max_examples_per_user',
                       'model.embedding_dim', 'model.filters', 'model.kernel_size')

  def examples_fn(self, data) -> Callable:
    """`features.next_action_examples`, user by user."""
    one = functools.partial(features.next_action_examples, context=data.context_events,
                            max_examples=data.max_examples_per_user,
                            pad_action=len(generators.vocabulary(data)))

    def many(timestamps, events, offsets, **kwargs):
      return [one(timestamps[a:b], events[a:b], **kwargs)
              for a, b in zip(offsets[:-1], offsets[1:])]

    return many

  def num_classes(self, config) -> int:
    return len(generators.vocabulary(config.data))

  def model_kwargs(self, config) -> dict:
    return dict(vocab_size=self.num_classes(config), context=config.data.context_events,
                embedding_dim=config.model.embedding_dim, filters=config.model.filters,
                kernel_size=config.model.kernel_size)

  def _build_model(self, **kwargs):
    return models.build_next_action_model(**kwargs)

  def _tensor_sizes(self, **kwargs) -> list[int]:
    return models.next_action_tensor_sizes(**kwargs)

  def input_spec(self, config):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    return (tf.TensorSpec([None, config.data.context_events], tf.int32),
            tf.TensorSpec([None, 1], tf.int32))

  def loss(self):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    return tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)

  def keras_metrics(self) -> list:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    return [tf.keras.metrics.SparseCategoricalAccuracy()]

  def eval_metrics(self, logits, labels) -> dict[str, float]:
    return metrics.multiclass_metrics(logits, labels, top_k=3)

  def baseline_description(self, frequencies) -> str:
    del frequencies
    return ('constant prediction at the held-out action frequencies for log loss; always '
            'the most frequent action for accuracy')

  def accuracy_baseline(self, summary_rows):
    return base.mean_baseline(summary_rows, 'eval_majority_accuracy_mean', lambda a: a,
                              'always the most frequent action')

  def probabilities(self, logits):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    return tf.nn.softmax(logits)

  def device_features_spec(self, config) -> dict[str, Any]:
    context = int(config.data.context_events)
    pad = len(generators.vocabulary(config.data))
    return {
        'input': {'name': 'x', 'dtype': 'int32', 'shape': [None, context]},
        'output': {'probabilities': (f'[n, {pad}]: probability of '
                                     'each event of event_vocabulary being the next one'),
                   'logits': 'the same as logits'},
        'context_events': context,
        'pad_index': pad,
        'context': (f'the indices (in event_vocabulary) of the last {context} events of '
                    'the current session, oldest first; positions before the session\'s '
                    f'first event hold pad_index ({pad})'),
    }

  def examples_from_spec(self, spec, timestamps, events, *, origin_timestamp, num_days):
    return features.next_action_examples(
        timestamps, events, origin_timestamp=origin_timestamp, num_days=num_days,
        context=spec['context_events'], max_examples=10**9, pad_action=spec['pad_index'])


TASK = NextAction()
