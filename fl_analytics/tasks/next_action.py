"""Next action: a user's next action in a session, from the `data.context_events`
actions before it (`features.next_action_examples`).

An embedding, a causal convolution and a dense layer (`models.build_next_action_model`),
softmax cross entropy; held-out log loss, top-1 accuracy (`eval_accuracy`), top-3
accuracy and the accuracy of always predicting the most frequent action.
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
                            pad_action=len(generators.vocabulary(data)),
                            with_gaps=bool(data.get('context_gaps', False)))

    def many(timestamps, events, offsets, **kwargs):
      return [one(timestamps[a:b], events[a:b], **kwargs)
              for a, b in zip(offsets[:-1], offsets[1:])]

    return many

  def num_classes(self, config) -> int:
    return len(generators.vocabulary(config.data))

  def model_kwargs(self, config) -> dict:
    common = dict(vocab_size=self.num_classes(config), context=config.data.context_events,
                  embedding_dim=config.model.embedding_dim)
    if _architecture(config) == 'gru':
      return dict(common, architecture='gru', units=config.model.gru_units,
                  num_gap_tokens=features.NUM_GAP_TOKENS)
    return dict(common, architecture='conv', filters=config.model.filters,
                kernel_size=config.model.kernel_size)

  def _build_model(self, *, architecture: str, **kwargs):
    return _BUILDERS[architecture][0](**kwargs)

  def _tensor_sizes(self, *, architecture: str, **kwargs) -> list[int]:
    return _BUILDERS[architecture][1](**kwargs)

  def check_config(self, config) -> None:
    super().check_config(config)
    architecture = _architecture(config)
    if architecture not in _BUILDERS:
      raise ValueError(f'model.architecture must be one of {", ".join(_BUILDERS)}. '
                       f'Found {architecture!r}.')
    gaps = bool(config.data.get('context_gaps', False))
    if gaps != (architecture == 'gru'):
      raise ValueError(
          f'model.architecture={architecture} with data.context_gaps={gaps}: the gru '
          'reads the time gaps between actions (data.context_gaps=True), the conv model '
          'only the actions (data.context_gaps=False).')
    if architecture == 'gru':
      units = config.model.get('gru_units')
      if isinstance(units, bool) or not isinstance(units, int) or units < 1:
        raise ValueError(f'model.gru_units must be a positive integer. Found {units!r}.')

  def input_spec(self, config):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    return (tf.TensorSpec([None, *_context_shape(config)], tf.int32),
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

  def user_baselines(self, users, frequencies) -> dict[str, Any]:
    """The per-user bigram (`metrics.online_bigram_ranks`), on the pooled examples the
    final metrics score: what a model of each user's own last-action habits gets."""
    fallback = 0.5 * np.asarray(frequencies) / max(1e-12, float(np.max(frequencies)))
    hits = np.zeros(2)
    total = 0
    for x, y in users:
      if not len(y):
        continue
      prev = x[:, -1, 0] if x.ndim == 3 else x[:, -1]
      ranks = metrics.online_bigram_ranks(prev, y.reshape(-1), num_classes=len(frequencies),
                                          fallback=fallback, top_k=3)
      hits += [np.sum(ranks[:, 0] == y.reshape(-1)),
               np.sum(np.any(ranks == y.reshape(-1, 1), axis=1))]
      total += len(y)
    return {'per_user_bigram': {
        'description': ("each user's own bigram, learnt online on its examples in time "
                        'order: the actions that followed the last one most often '
                        'before, then its most frequent, then the population\'s'),
        'examples': total, 'accuracy': float(hits[0] / max(total, 1)),
        'top3_accuracy': float(hits[1] / max(total, 1))}}

  def probabilities(self, logits):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    return tf.nn.softmax(logits)

  def device_features_spec(self, config) -> dict[str, Any]:
    context = int(config.data.context_events)
    pad = len(generators.vocabulary(config.data))
    gaps = {} if _architecture(config) != 'gru' else {'gaps': {
        'index': 1, 'edges_seconds': list(features.GAP_EDGES_SECONDS),
        'session_start': features.GAP_SESSION_START, 'pad': features.GAP_PAD,
        'definition': ('x[..., 1] of a position: the bucket of the seconds since the '
                       'action before it in the session (the first i with seconds <= '
                       'edges_seconds[i], else len(edges_seconds)); session_start for '
                       'a session\'s first action, pad where x[..., 0] is pad_index')}}
    return {
        'input': {'name': 'x', 'dtype': 'int32', 'shape': [None, *_context_shape(config)]},
        **gaps,
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
        context=spec['context_events'], max_examples=10**9, pad_action=spec['pad_index'],
        with_gaps='gaps' in spec)


def _architecture(config) -> str:
  return config.model.get('architecture', 'conv')


def _context_shape(config) -> list[int]:
  context = int(config.data.context_events)
  return [context, 2] if config.data.get('context_gaps', False) else [context]


# model.architecture -> (its builder, its tensor sizes), `models`.
_BUILDERS = {
    'conv': (models.build_next_action_model, models.next_action_tensor_sizes),
    'gru': (models.build_next_action_gru_model, models.next_action_gru_tensor_sizes),
}

TASK = NextAction()
