"""What the matrix-factorization mechanisms (`banded`, `blt`) share: their strategy for
the run, their accounting, their statement and their aggregator. Not a mechanism itself.

A matrix mechanism adds, in round t, the t-th entry of C^{-1} z with z Gaussian of
stddev `noise_multiplier * clip * sens(C)` (`fl_analytics.privacy.correlated_noise`).
The released sums are then a post-processing of C x + z, one Gaussian mechanism on a
stream whose sensitivity to one user is `clip * sens(C)` under the schedule's bounds
(k participations, b apart: `matrix_factorization.minsep_sensitivity_squared`). So the
whole run is `GaussianDpEvent(noise_multiplier)` under the zero-out relation, whatever
the rounds so far: every prefix of the run is covered by it (Choquette-Choo et al. 2023;
McMahan et al. 2024). The strategy is optimized for the planned rounds (`num_rounds`),
k and b (`resolve`, recorded in config.json under the mechanism's name, so a resumed
run generates its noise with exactly the strategy it started with).
"""

from __future__ import annotations

import dataclasses
import secrets
from typing import Callable, Optional

import dp_accounting

from fl_analytics.privacy import matrix_factorization as mf
from fl_analytics.privacy.mechanisms import base


def planned_rounds(settings: base.DpSettings, rounds: Optional[int] = None) -> int:
  n = max(rounds or 0, settings.planned_rounds or 0)
  if n < 1:
    raise ValueError(f'dp.mechanism={settings.mechanism} optimizes its noise for the '
                     'planned number of rounds (num_rounds): none was given.')
  return n


def strategy(settings: base.DpSettings, optimize: Callable[..., mf.Strategy],
             rounds: Optional[int] = None) -> mf.Strategy:
  """The run's strategy: the one recorded in `settings.derived` (what `resolve`
  optimized for the planned rounds), else `optimize(n, k, b)` for the rounds."""
  n = planned_rounds(settings, rounds)
  derived = settings.derived
  if derived and derived.get('n') == n:
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in derived.items()}
    return mf.Strategy(**fields)
  bounds = settings.bounds(n)
  if bounds is None:
    raise ValueError(f'dp.mechanism={settings.mechanism} needs a schedule that bounds '
                     f'participations (sampling={" or ".join(base.SCHEDULES)}). Found '
                     f'sampling={settings.sampling}.')
  return optimize(n, *bounds)


def resolve(settings: base.DpSettings, optimize: Callable[..., mf.Strategy]):
  """The mechanism's `resolve`: its strategy for the planned rounds, in `derived`."""
  if settings.planned_rounds is None or settings.scheme.bounds is None:
    return settings
  return dataclasses.replace(settings, derived=strategy(settings, optimize).fields())


def event(settings: base.DpSettings, rounds: int) -> dp_accounting.DpEvent:
  """One Gaussian mechanism on C x: its noise multiplier, relative to clip * sens(C)."""
  del rounds
  return dp_accounting.GaussianDpEvent(settings.accounted_noise_multiplier)


def noise_covariance(settings: base.DpSettings, rounds: int, *,
                     optimize: Callable[..., mf.Strategy]):
  """The claimed covariance of one coordinate's noise over the first `rounds` rounds:
  stddev**2 L L^T, L the first `rounds` rows of C^{-1} (lower-triangular Toeplitz)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from scipy import linalg  # pylint: disable=g-import-not-at-top

  s = strategy(settings, optimize, rounds)
  inverse = mf.inverse_coefs(s.toeplitz_coefs(), s.n)[:rounds]
  lower = linalg.toeplitz(inverse, np.zeros(rounds))
  stddev = settings.noise_multiplier * settings.clip * s.sensitivity
  return stddev**2 * lower @ lower.T


def statement(settings: base.DpSettings, rounds: int, *, title: str,
              optimize: Callable[..., mf.Strategy]) -> tuple[dict, str]:
  """The mechanism's `statement`: its bounds, strategy and note."""
  s = strategy(settings, optimize, rounds)
  return {'max_participations': s.max_participations, 'min_separation': s.min_sep,
          'accounted_rounds': s.n, 'strategy_sensitivity': s.sensitivity,
          'strategy_max_error': s.max_error}, (
      f'{title}: {settings.scheme.note}. The noise of round t is the t-th entry of '
      f'C^(-1) z for a strategy C optimized for {s.n} rounds, at most '
      f'{s.max_participations} participations {s.min_sep} apart, whose sensitivity '
      f'under those bounds is {s.sensitivity:.4g} (clip units; z has stddev noise '
      'multiplier x clip x sensitivity): one Gaussian mechanism over the whole run '
      '(GaussianDpEvent, zero-out neighbours), which covers every prefix of it.')


def build(settings: base.DpSettings, record_specs=None, record_sum=None, *,
          optimize: Callable[..., mf.Strategy]):
  """The mechanism's `build`: TFF's DifferentiallyPrivateFactory over the correlated
  noise query, normalized by the cohort."""
  import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top
  import tensorflow_privacy as tfp  # pylint: disable=g-import-not-at-top

  from fl_analytics.privacy import correlated_noise  # pylint: disable=g-import-not-at-top

  if record_specs is None:
    raise ValueError(f'dp.mechanism={settings.mechanism} needs the record specs.')
  s = strategy(settings, optimize)
  seed = settings.noise_seed if settings.noise_seed is not None else secrets.randbits(62)
  query = correlated_noise.CorrelatedNoiseSumQuery(
      settings.clip, settings.noise_multiplier * settings.clip * s.sensitivity, s,
      record_specs, seed)
  return tff.aggregators.DifferentiallyPrivateFactory(
      tfp.NormalizedQuery(query, denominator=float(settings.clients_per_round)),
      record_sum)


def mechanism(*, optimizer: Callable[[base.DpSettings], Callable[..., mf.Strategy]],
              **fields) -> base.Mechanism:
  """A matrix mechanism's registry entry. `optimizer(settings)` is its optimize(n, k, b)
  for the settings' own keys; `fields` are the `Mechanism`'s own (name, label, title,
  noise, check, config, style); it runs on the production schedules, RDP."""
  return base.Mechanism(
      samplings=base.SCHEDULES, accountants=('rdp',), event=event,
      build=lambda settings, record_specs=None, record_sum=None: build(
          settings, record_specs, record_sum, optimize=optimizer(settings)),
      statement=lambda settings, rounds: statement(
          settings, rounds, title=fields['title'], optimize=optimizer(settings)),
      resolve=lambda settings: resolve(settings, optimizer(settings)),
      noise_covariance=lambda settings, rounds: noise_covariance(
          settings, rounds, optimize=optimizer(settings)),
      sampling_refusal=('Its sensitivity comes from bounding participations, so it '
                        'runs on the production schedules.'),
      secure_sum=True, compression=True, fixed_clip=True, **fields)
