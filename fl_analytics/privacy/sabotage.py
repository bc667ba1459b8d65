"""Broken mechanisms, for testing the audit: realistic faults that leave the claim as it
was. Nothing in training, the registry or the configs can reach them; the white-box
audit (`fl_analytics.privacy.mechanism_audit`) must flag each one, in every seed
(`tests/mechanism_audit_test.py`), and `make audit-mechanisms` reports them beside the
correct mechanisms.

Each fault is `(settings, dim) -> make_factory` for audited `gaussian_fixed` settings
(`mechanism_audit.audit_settings`), except the sampler, which is a `Scheme.draw`:

* `smaller_noise`: noise ten times smaller than accounted;
* `no_clip`: updates not clipped (the noise as accounted);
* `first_round_noise`: noise in the first round only;
* `repeated_noise`: the same noise every round;
* `clip_after_sum`: the clip applied to the sum instead of each client;
* `tenfold_sampler`: each user sampled at ten times the rate the accountant is told.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np

from fl_analytics.privacy import aggregators
from fl_analytics.privacy import sampling
from fl_analytics.privacy.mechanisms import base


def _rebuilt(settings: base.DpSettings, dim: int, **changes) -> Callable[[], Any]:
  return aggregators.vector_factories(dataclasses.replace(settings, **changes), dim)


def smaller_noise(settings: base.DpSettings, dim: int) -> Callable[[], Any]:
  return _rebuilt(settings, dim, noise_multiplier=settings.noise_multiplier / 10)


def no_clip(settings: base.DpSettings, dim: int) -> Callable[[], Any]:
  """Clip a million times larger, noise multiplier a million times smaller: the same
  noise stddev, no clipping in effect."""
  return _rebuilt(settings, dim, clip=settings.clip * 1e6,
                  noise_multiplier=settings.noise_multiplier / 1e6)


def _query_factory(query_class, settings: base.DpSettings) -> Callable[[], Any]:
  def make():
    import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top
    import tensorflow_privacy as tfp  # pylint: disable=g-import-not-at-top

    query = query_class(settings.clip, settings.noise_multiplier * settings.clip)
    return tff.aggregators.DifferentiallyPrivateFactory(
        tfp.NormalizedQuery(query, denominator=float(settings.clients_per_round)))
  return make


def _gaussian_query_subclass(name: str, **methods):
  import tensorflow_privacy as tfp  # pylint: disable=g-import-not-at-top

  return type(name, (tfp.GaussianSumQuery,), methods)


def first_round_noise(settings: base.DpSettings, dim: int) -> Callable[[], Any]:
  del dim

  def get_noised_result(self, sample_state, global_state):
    result, state, event = super(cls, self).get_noised_result(sample_state, global_state)
    return result, state._replace(stddev=state.stddev * 0.0), event

  cls = _gaussian_query_subclass('FirstRoundNoiseQuery',
                                 get_noised_result=get_noised_result)
  return _query_factory(cls, settings)


def repeated_noise(settings: base.DpSettings, dim: int) -> Callable[[], Any]:
  del dim

  def get_noised_result(self, sample_state, global_state):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    result = tf.nest.map_structure(
        lambda v: v + global_state.stddev * tf.random.stateless_normal(
            tf.shape(v), seed=[29, 29], dtype=v.dtype), sample_state)
    return result, global_state, self._sabotaged_event(global_state)

  cls = _gaussian_query_subclass('RepeatedNoiseQuery',
                                 get_noised_result=get_noised_result,
                                 _sabotaged_event=_event)
  return _query_factory(cls, settings)


def _event(self, global_state):
  del self
  import dp_accounting  # pylint: disable=g-import-not-at-top

  return dp_accounting.GaussianDpEvent(global_state.stddev / global_state.l2_norm_clip)


def clip_after_sum(settings: base.DpSettings, dim: int) -> Callable[[], Any]:
  del dim

  def preprocess_record(self, params, record):
    del self, params
    return record

  def get_noised_result(self, sample_state, global_state):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    flat, _ = tf.clip_by_global_norm(tf.nest.flatten(sample_state),
                                     global_state.l2_norm_clip)
    clipped = tf.nest.pack_sequence_as(sample_state, flat)
    return super(cls, self).get_noised_result(clipped, global_state)

  cls = _gaussian_query_subclass('ClipAfterSumQuery', preprocess_record=preprocess_record,
                                 get_noised_result=get_noised_result)
  return _query_factory(cls, settings)


def tenfold_sampler(*, population_size, clients_per_round, seed, round_num,
                    participation=None) -> np.ndarray:
  """Poisson sampling at ten times `clients_per_round / population_size`."""
  del participation
  q = min(1.0, 10 * clients_per_round / population_size)
  return sampling.poisson_cohort(population_size=population_size, sampling_probability=q,
                                 seed=seed, round_num=round_num)


# The faults of the aggregator, by name (the sampler is apart: it is not an aggregator).
AGGREGATOR_FAULTS: dict[str, Callable[[base.DpSettings, int], Callable[[], Any]]] = {
    'noise 10x smaller': smaller_noise,
    'no clipping': no_clip,
    'noise in the first round only': first_round_noise,
    'the same noise every round': repeated_noise,
    'clip applied to the sum': clip_after_sum,
}
