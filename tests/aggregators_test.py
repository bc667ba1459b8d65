"""Aggregator selection, its validation errors, and the seeded DP noise."""

import collections
import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

from fl_analytics.privacy import aggregators
from fl_analytics.privacy import statement
from fl_analytics.core import runtime
from fl_analytics.privacy import seeded_noise


def _check(**kw):
  args = dict(mechanism='gaussian_adaptive', noise_multiplier=1.0, clip=1.0,
              clients_per_round=50)
  args.update(kw)
  aggregators.check_dp_config(**args)


def test_adaptive_clip_raises_when_noise_too_large_for_cohort():
  with pytest.raises(ValueError, match=r'dp.noise_multiplier=6 is too large for adaptive '
                     r'clipping with clients_per_round=50: it must be below .* = 5'):
    _check(noise_multiplier=6.0)


def test_adaptive_bound_agrees_with_tff():
  # Just below our bound TFF accepts; at the bound TFF raises too.
  bound = aggregators.adaptive_max_noise_multiplier(20)
  tff.aggregators.DifferentiallyPrivateFactory.gaussian_adaptive(
      noise_multiplier=bound * 0.99, clients_per_round=20.0)
  with pytest.raises(ValueError):
    tff.aggregators.DifferentiallyPrivateFactory.gaussian_adaptive(
        noise_multiplier=bound, clients_per_round=20.0)


@pytest.mark.parametrize('kw, message', [
    (dict(clip=-1.0), r'dp.clip must be a finite number > 0. Found -1.0'),
    (dict(mechanism='laplace'), r'dp.mechanism must be one of none, gaussian_fixed, '
     r"gaussian_adaptive, tree, distributed, banded, blt. Found 'laplace'"),
    (dict(mechanism='distributed', bits=30), r'dp.bits must be an integer in \[1, 22\]. '
     r'Found 30'),
    (dict(mechanism='distributed', bits=5), r'dp.bits=5 is too small for '
     r'clients_per_round=50'),
    (dict(mechanism='gaussian_fixed', noise_multiplier=0.0),
     r'dp.noise_multiplier must be a finite number > 0'),
    (dict(target_unclipped_quantile=1.5), r'target_unclipped_quantile must be in \(0, 1\)'),
])
def test_invalid_dp_settings_raise_naming_the_value(kw, message):
  with pytest.raises(ValueError, match=message):
    _check(**kw)


def test_none_ignores_noise_settings_that_a_dp_mechanism_refuses():
  with pytest.raises(ValueError, match='dp.clip must be a finite number > 0'):
    _check(mechanism='gaussian_fixed', noise_multiplier=1.0, clip=-1.0)
  _check(mechanism='none', noise_multiplier=0.0, clip=-1.0)  # raises nothing
  factory = aggregators.build_model_aggregator(
      mechanism='none', noise_multiplier=0.0, clip=-1.0, clients_per_round=10)
  assert isinstance(factory, tff.aggregators.UnweightedAggregationFactory)
  assert not isinstance(factory, tff.aggregators.DifferentiallyPrivateFactory)


@pytest.mark.parametrize('mechanism, seed', [
    ('none', None), ('gaussian_fixed', None), ('gaussian_adaptive', 3),
])
def test_each_mechanism_builds_an_unweighted_factory(mechanism, seed):
  factory = aggregators.build_model_aggregator(
      mechanism=mechanism, noise_multiplier=0.5, clip=1.0, clients_per_round=10,
      noise_seed=seed)
  assert isinstance(factory, tff.aggregators.UnweightedAggregationFactory)
  if seed is not None:
    assert isinstance(factory._query, seeded_noise.SeededNoiseQuery)


@pytest.mark.cpp
def _noise_of_rounds(seed, rounds, mechanism='gaussian_fixed'):
  """The aggregate of all-zero updates from one client: pure noise / cohort."""
  value_type = tff.types.to_type(
      collections.OrderedDict(a=(np.float32, [4000]), b=(np.float32, [4000])))
  process = aggregators.build_model_aggregator(
      mechanism=mechanism, noise_multiplier=2.0, clip=0.5, clients_per_round=10,
      noise_seed=seed).create(value_type)
  zeros = collections.OrderedDict(a=np.zeros(4000, np.float32),
                                  b=np.zeros(4000, np.float32))
  out = []
  with runtime.local_cpp_context():
    state = process.initialize()
    for _ in range(rounds):
      output = process.next(state, [zeros])
      state = output.state
      out.append(output.result)
  return out


@pytest.mark.slow
def test_seeded_noise_repeats_differs_by_round_and_tensor_and_has_its_stddev():
  first = _noise_of_rounds(seed=7, rounds=2)
  again = _noise_of_rounds(seed=7, rounds=2)
  other = _noise_of_rounds(seed=8, rounds=1)
  np.testing.assert_array_equal(first[0]['a'], again[0]['a'])
  np.testing.assert_array_equal(first[1]['b'], again[1]['b'])
  assert not np.allclose(first[0]['a'], first[1]['a'])  # another round
  assert not np.allclose(first[0]['a'], first[0]['b'])  # another tensor
  assert not np.allclose(first[0]['a'], other[0]['a'])  # another seed
  # Sum noise stddev = z * clip = 1.0, divided by the expected cohort of 10.
  noise = np.concatenate([first[0]['a'], first[0]['b'], first[1]['a']])
  assert noise.std() == pytest.approx(0.1, rel=0.05)
  assert abs(noise.mean()) < 0.01
  assert abs(np.corrcoef(first[0]['a'], first[1]['a'])[0, 1]) < 0.05


@pytest.mark.slow
def test_unseeded_noise_differs_between_runs():
  a = _noise_of_rounds(seed=None, rounds=1)
  b = _noise_of_rounds(seed=None, rounds=1)
  assert not np.allclose(a[0]['a'], b[0]['a'])


def _find_skellam_query_state(structure):
  """The DistributedSkellamSumQuery's global state inside an aggregator state."""
  if hasattr(structure, '_fields') and set(structure._fields) == {
      'l1_norm_bound', 'l2_norm_bound', 'local_stddev'}:
    return structure
  children = (structure.values() if isinstance(structure, dict) else
              structure if isinstance(structure, (list, tuple)) else [])
  for child in children:
    found = _find_skellam_query_state(child)
    if found is not None:
      return found
  return None


@pytest.mark.cpp
def test_distributed_parameters_are_those_of_the_built_skellam_query():
  dim, z, clip, clients, bits = 300, 1.3, 0.5, 20, 14
  params = aggregators.distributed_parameters(
      noise_multiplier=z, clip=clip, clients_per_round=clients, bits=bits, dim=dim)
  process = aggregators.build_model_aggregator(
      mechanism='distributed', noise_multiplier=z, clip=clip, clients_per_round=clients,
      bits=bits).create(tff.types.to_type(collections.OrderedDict(
          a=(np.float32, [200]), b=(np.float32, [100]))))
  with runtime.local_cpp_context():
    state = process.initialize()
  query = _find_skellam_query_state(state)
  assert query is not None
  assert params['padded_dim'] == 512
  assert params['l1_bound'] == int(query.l1_norm_bound)
  assert params['l2_bound'] == float(query.l2_norm_bound)
  assert params['local_stddev'] == float(query.local_stddev)
  # The scaled local noise is the noise multiplier times the scaled clip, split over
  # the cohort; the L2 bound is the scaled clip inflated by the rounding of each of
  # the padded coordinates (beta = 0: + sqrt(padded_dim) after scaling).
  assert params['local_stddev'] == pytest.approx(
      z * clip * params['scale'] / np.sqrt(clients), rel=1e-6)
  assert params['l2_bound'] == pytest.approx(
      (clip + 1e-5) * params['scale'] + np.sqrt(512), rel=1e-6)  # TFF's 1e-5 leeway


@pytest.mark.cpp
def test_compression_factor_bounds_what_tff_quantization_does_to_a_clipped_update():
  # TFF's own factory, applied to adversarial-ish records of norm 1: a few large
  # coordinates (wide min/max range) and many small ones.
  sizes = [300, 7]
  value_type = tff.StructWithPythonType(
      [tff.TensorType(np.float32, [d]) for d in sizes], list)
  rng = np.random.default_rng(0)
  with runtime.local_cpp_context():
    worst = {bits: _worst_quantized_norm(bits, sizes, value_type, rng) for bits in (2, 4)}
  for bits in (2, 4):
    factor = statement.compression_sensitivity_factor(bits=bits, tensor_sizes=sizes,
                                                    threshold=10)
    assert 1.0 < worst[bits] <= factor, (bits, worst[bits], factor)


def _worst_quantized_norm(bits, sizes, value_type, rng):
  """Largest norm after quantizing records of norm 1 with a few large coordinates."""
  process = aggregators.compression_sum_factory(bits=bits, threshold=10).create(
      value_type)
  state = process.initialize()
  worst = 0.0
  for trial in range(20):
    x = [rng.normal(size=d).astype(np.float32) for d in sizes]
    x[0][:2] = [30.0, -30.0] if trial % 2 else [30.0, 0.0]
    norm = math.sqrt(sum(float(np.sum(v.astype(np.float64)**2)) for v in x))
    x = [v / norm for v in x]
    out = process.next(state, [x]).result
    worst = max(worst, math.sqrt(sum(float(np.sum(np.asarray(v, np.float64)**2))
                                     for v in out)))
    np.testing.assert_array_equal(out[1], x[1])  # below the threshold: unchanged
  return worst
