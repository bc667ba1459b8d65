"""What a learning task is: the one unit that owns everything that varies with what is
learnt.

A task owns its featurization (`examples_fn`), its model (`build_model`, `tensor_sizes`),
its input spec, loss and metrics for TFF, its held-out metrics and `eval_*` columns, its
headline and accuracy metrics with their labels, the baseline it is compared against,
what the final evaluation adds (`calibrates`, `baseline_description`), how the device
computes its input (`device_features_spec`, `examples_from_spec`) and what the model
outputs there (`probabilities`).
Nothing outside `fl_analytics.tasks` branches on a task's name: the run, the engines,
the reports and the export ask the task. This module imports neither TensorFlow nor TFF.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, ClassVar, Optional, Sequence

import numpy as np

from fl_analytics.data import clients


@dataclasses.dataclass(frozen=True)
class Metric:
  """A held-out metric of a task: its metrics.csv column and how it is labelled."""

  column: str  # e.g. 'eval_top3_accuracy'
  label: str  # short, for tables: 'top-3'
  name: str  # in sentences: 'top-3 accuracy'
  axis_label: str  # for figures: 'held-out top-3 accuracy'
  plot_name: str = ''  # the by-round figure's file name, e.g. 'top3_accuracy_by_round'


class Task:
  """A learning task (`task` in the config). Subclasses set the class attributes and
  implement the methods that raise NotImplementedError."""

  name: ClassVar[str]
  title: ClassVar[str]  # for figures
  train_accuracy_key: ClassVar[str]  # the Keras metric TFF reports for training accuracy
  eval_columns: ClassVar[tuple[str, ...]]  # the eval_* columns of metrics.csv it fills
  headline: ClassVar[Metric]  # what a frontier plots and a summary leads with
  accuracy: ClassVar[Metric]  # the second panel of the frontier
  # What the run summary compares for personalization (global against personalized).
  personalization: ClassVar[Metric]
  # Config keys of this task that must be positive integers.
  positive_int_keys: ClassVar[tuple[str, ...]] = ()
  # The final evaluation adds a reliability diagram (calibration.csv).
  calibrates: ClassVar[bool] = False

  # --- data -------------------------------------------------------------------------

  def examples_fn(self, data) -> Callable:
    """Many users' examples for config section `data`: `fn(timestamps, events, offsets,
    origin_timestamp=, num_days=)` -> one `(x, y)` per user (`clients.build_data`)."""
    raise NotImplementedError

  def population(self, data, *, seed: int, opt_out: float = 0.0) -> clients.FederatedData:
    """The population of config section `data`, featurized for this task."""
    return clients.build_data(data, seed=seed, opt_out=opt_out,
                              examples_fn=self.examples_fn(data))

  def build_data(self, config) -> clients.FederatedData:
    return self.population(config.data, seed=config.data.seed,
                           opt_out=config.clients.opt_out)

  def eval_population_note(self, y: np.ndarray) -> str:
    """What the run's log adds about the held-out labels `y` (e.g. a base rate)."""
    del y
    return ''

  # --- model ------------------------------------------------------------------------

  def num_classes(self, config) -> int:
    """Labels 0..num_classes-1 (they may depend on the generator's vocabulary)."""
    raise NotImplementedError

  def model_kwargs(self, config) -> dict:
    """The model builder's hyperparameters from `config`."""
    raise NotImplementedError

  def _build_model(self, *, seed: int, **kwargs):
    raise NotImplementedError

  def _tensor_sizes(self, **kwargs) -> list[int]:
    raise NotImplementedError

  def build_model(self, config):
    return self._build_model(**self.model_kwargs(config), seed=config.seed)

  def tensor_sizes(self, config) -> list[int]:
    """Elements of each trainable tensor (what the secure sum and compression bound)."""
    return self._tensor_sizes(**self.model_kwargs(config))

  def resolved_extras(self, config) -> dict[str, Any]:
    """What the task adds to config.json's `resolved` section."""
    del config
    return {}

  def chance_loss(self, config) -> float:
    """The log loss of predicting every class with equal probability: about where an
    untrained model starts (the divergence check's reference)."""
    return math.log(self.num_classes(config))

  def check_config(self, config) -> None:
    """Raises ValueError naming a bad task-specific config value."""
    for key in self.positive_int_keys:
      section, name = key.split('.')
      value = config[section].get(name)
      if not isinstance(value, int) or value < 1:
        raise ValueError(f'{key} must be a positive integer for task={self.name}. '
                         f'Found {value!r}.')

  # --- TFF --------------------------------------------------------------------------

  def input_spec(self, config):
    raise NotImplementedError

  def loss(self):
    raise NotImplementedError

  def keras_metrics(self) -> list:
    raise NotImplementedError

  def model_fn(self, config) -> Callable:
    """A no-argument function returning a fresh `tff.learning.models.VariableModel`."""
    import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top

    input_spec = self.input_spec(config)

    def model_fn():
      return tff.learning.models.from_keras_model(
          self.build_model(config), loss=self.loss(), input_spec=input_spec,
          metrics=self.keras_metrics())

    return model_fn

  # --- evaluation and reporting -----------------------------------------------------

  def eval_metrics(self, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Pooled held-out metrics; their keys are the `eval_*` columns of metrics.csv."""
    raise NotImplementedError

  def baseline_description(self, frequencies: np.ndarray) -> str:
    """What the final evaluation's constant baseline is, given the held-out label
    frequencies it predicts."""
    raise NotImplementedError

  def accuracy_baseline(self, summary_rows: Sequence[dict]
                        ) -> Optional[tuple[float, str]]:
    """(accuracy, name) of always predicting the most frequent label; None if unknown."""
    raise NotImplementedError

  def user_baselines(self, users: Sequence[tuple[np.ndarray, np.ndarray]],
                     frequencies: np.ndarray) -> dict[str, Any]:
    """Baselines beyond the constant one that the final evaluation reports, over the
    held-out users' (x, y) in time order and the held-out label frequencies; none by
    default."""
    del users, frequencies
    return {}

  # --- the device -------------------------------------------------------------------

  def probabilities(self, logits):
    """The model's probabilities from its logits, in TensorFlow (the exported model)."""
    raise NotImplementedError

  def device_features_spec(self, config) -> dict[str, Any]:
    """The task's part of `features.json`: the input, the output and how the device
    computes the input from its raw events."""
    raise NotImplementedError

  def examples_from_spec(self, spec: dict, timestamps: np.ndarray, events: np.ndarray, *,
                         origin_timestamp: int, num_days: int):
    """A user's examples from raw events with the parameters of `spec` (a
    `features.json`), through the featurizer the training pipeline uses."""
    raise NotImplementedError


def mean_baseline(rows, column, transform, label) -> Optional[tuple[float, str]]:
  """`transform` of the mean of `column` over summary rows, with its label."""
  values = [r[column] for r in rows
            if r.get(column) is not None and math.isfinite(r[column])]
  if not values:
    return None
  return transform(float(np.mean(values))), label
