"""Keras models for the analytics tasks, wrapped for TFF.

The model is built by a function of its hyperparameters and a seed, so the server's
initial weights come from the config alone (`initial_weights`), not from TensorFlow's
global random state.
"""

from __future__ import annotations

from typing import Callable

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


def churn_model_fn(*, num_features: int, hidden_units: int, seed: int) -> Callable:
  """A no-argument function returning a fresh `tff.learning.models.VariableModel`."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top

  input_spec = (
      tf.TensorSpec([None, num_features], tf.float32),
      tf.TensorSpec([None, 1], tf.float32),
  )

  def model_fn():
    return tff.learning.models.from_keras_model(
        build_churn_model(
            num_features=num_features, hidden_units=hidden_units, seed=seed
        ),
        loss=tf.keras.losses.BinaryCrossentropy(from_logits=True),
        input_spec=input_spec,
        metrics=[tf.keras.metrics.BinaryAccuracy(threshold=0.0)],
    )

  return model_fn


def initial_weights(keras_model) -> tuple[list[np.ndarray], list[np.ndarray]]:
  return (
      [v.numpy() for v in keras_model.trainable_variables],
      [v.numpy() for v in keras_model.non_trainable_variables],
  )
