"""Keras models of the analytics tasks (`fl_analytics.tasks` wraps them for TFF).

The model is built by a function of its hyperparameters and a seed, so the server's
initial weights come from the config alone (`initial_weights`), not from TensorFlow's
global random state.
"""

from __future__ import annotations

import numpy as np


def build_churn_model(*, num_features: int, hidden_units: int, seed: int):
  """A one-hidden-layer MLP producing the churn logit."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  init = tf.keras.initializers.GlorotUniform
  inputs = tf.keras.Input(shape=(num_features,))
  hidden = inputs
  if hidden_units > 0:
    hidden = tf.keras.layers.Dense(
        hidden_units, activation='relu', kernel_initializer=init(seed=seed)
    )(inputs)
  logit = tf.keras.layers.Dense(1, kernel_initializer=init(seed=seed + 1))(hidden)
  return tf.keras.Model(inputs, logit)


def churn_tensor_sizes(*, num_features: int, hidden_units: int) -> list[int]:
  """Elements of each trainable tensor of `build_churn_model`, in Keras order
  (models_test checks them against Keras)."""
  if hidden_units > 0:
    return [num_features * hidden_units, hidden_units, hidden_units, 1]
  return [num_features, 1]


def churn_num_parameters(*, num_features: int, hidden_units: int) -> int:
  """Trainable parameters of `build_churn_model`."""
  return sum(churn_tensor_sizes(num_features=num_features, hidden_units=hidden_units))


def build_next_action_model(*, vocab_size: int, context: int, embedding_dim: int,
                            filters: int, kernel_size: int, seed: int):
  """A small sequence model: the last `context` actions -> logits of the next one.

  An embedding of the actions (plus a padding token, index `vocab_size`), a causal 1-D
  convolution over the sequence and a dense layer over the flattened positions.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  init = tf.keras.initializers.GlorotUniform
  inputs = tf.keras.Input(shape=(context,), dtype=tf.int32)
  h = tf.keras.layers.Embedding(
      vocab_size + 1, embedding_dim,
      embeddings_initializer=tf.keras.initializers.RandomUniform(
          -0.05, 0.05, seed=seed))(inputs)
  h = tf.keras.layers.Conv1D(filters, kernel_size, padding='causal', activation='relu',
                             kernel_initializer=init(seed=seed + 1))(h)
  h = tf.keras.layers.Flatten()(h)
  logits = tf.keras.layers.Dense(vocab_size, kernel_initializer=init(seed=seed + 2))(h)
  return tf.keras.Model(inputs, logits)


def next_action_tensor_sizes(*, vocab_size: int, context: int, embedding_dim: int,
                             filters: int, kernel_size: int) -> list[int]:
  """Elements of each trainable tensor of `build_next_action_model`, in Keras order."""
  return [(vocab_size + 1) * embedding_dim, kernel_size * embedding_dim * filters, filters,
          context * filters * vocab_size, vocab_size]


def build_next_action_gru_model(*, vocab_size: int, context: int, embedding_dim: int,
                                units: int, num_gap_tokens: int, seed: int):
  """A recurrent sequence model: the last `context` actions and the time gaps between
  them -> logits of the next action.

  Input `[n, context, 2]` int32: each position's action (`vocab_size`: padding) and
  time-gap bucket (`features.GAP_EDGES_SECONDS`; `num_gap_tokens` of them with the
  session-start and padding tokens). Their embeddings are added and read by a GRU
  (Cho et al. 2014; Keras `GRU`, unrolled so that TFLite's builtin ops express it)
  whose last state goes through a dense layer.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  init = tf.keras.initializers.GlorotUniform
  inputs = tf.keras.Input(shape=(context, 2), dtype=tf.int32)
  uniform = lambda k: tf.keras.initializers.RandomUniform(-0.05, 0.05, seed=seed + k)
  actions = tf.keras.layers.Embedding(vocab_size + 1, embedding_dim,
                                      embeddings_initializer=uniform(0))(inputs[:, :, 0])
  gaps = tf.keras.layers.Embedding(num_gap_tokens, embedding_dim,
                                   embeddings_initializer=uniform(3))(inputs[:, :, 1])
  h = tf.keras.layers.GRU(
      units, unroll=True, kernel_initializer=init(seed=seed + 1),
      recurrent_initializer=tf.keras.initializers.Orthogonal(seed=seed + 4))(
          tf.keras.layers.Add()([actions, gaps]))
  logits = tf.keras.layers.Dense(vocab_size, kernel_initializer=init(seed=seed + 2))(h)
  return tf.keras.Model(inputs, logits)


def next_action_gru_tensor_sizes(*, vocab_size: int, context: int, embedding_dim: int,
                                 units: int, num_gap_tokens: int) -> list[int]:
  """Elements of each trainable tensor of `build_next_action_gru_model`, in Keras order
  (the GRU's kernel, recurrent kernel and its two bias rows, `reset_after`)."""
  del context
  return [(vocab_size + 1) * embedding_dim, num_gap_tokens * embedding_dim,
          embedding_dim * 3 * units, units * 3 * units, 2 * 3 * units,
          units * vocab_size, vocab_size]


def initial_weights(keras_model) -> tuple[list[np.ndarray], list[np.ndarray]]:
  return (
      [v.numpy() for v in keras_model.trainable_variables],
      [v.numpy() for v in keras_model.non_trainable_variables],
  )
