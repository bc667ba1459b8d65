"""What a DP mechanism is here, and the one settings object every part reads.

A `Mechanism` is one value of `dp.mechanism`. Its module
(`fl_analytics/privacy/mechanisms/NAME.py`) defines it: its own config keys and their
defaults (`config`), what it allows (sampling schemes, accountants, secure sum,
compression, dropout, engines), the checks of its own arguments, the `tff.aggregators` factory
it runs, its dp_accounting event (the rounds as they ran) and what it adds to the
privacy statement. `fl_analytics.privacy.statement` composes the events with dp_accounting and
assembles the statement; it knows no mechanism by name.

`DpSettings` is the run's DP settings once validated and calibrated (`training.
resolve_config`, once per launch): the aggregator, the accountant, the statement and
the figures read the same frozen object.

Importing this package imports neither TensorFlow nor TFF; the builders import TFF
when they run.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Optional

import dp_accounting
import numpy as np

from fl_analytics.privacy import sampling


_DEFAULT_PARTICIPATION = sampling.Participation()


@dataclasses.dataclass(frozen=True)
class DpSettings:
  """A run's resolved DP settings: what the aggregator, accountant and statement read.

  `noise_multiplier` is the calibrated one. `sensitivity_factor` (>= 1) is how much the
  aggregation (secure sum, compression) can enlarge one user's clipped update: the
  accountant uses `noise_multiplier / sensitivity_factor`. A mechanism's own
  hyperparameters are in `params` (`param` reads one), what it derives from the noise
  multiplier in `derived`.
  """

  mechanism: str = 'none'
  noise_multiplier: float = 0.0
  clip: float = 1.0
  clients_per_round: float = 1.0
  population_size: Optional[int] = None  # the users that can be sampled
  sampling: str = 'poisson'
  accountant: str = 'rdp'
  delta: float = 1e-5
  noise_seed: Optional[int] = None  # seeded noise (simulation); None: TF Privacy's
  restart_period: Optional[int] = None  # tree: rounds per pass (None: from the cohort)
  # The schedules' participation limits (`sampling.Participation`; schemes with
  # `bounds` only).
  participation: sampling.Participation = _DEFAULT_PARTICIPATION
  # The rounds the run is planned for (`num_rounds`): a mechanism whose noise is
  # correlated across the whole run (one tree, a matrix factorization) accounts the
  # planned run at every round, which bounds any prefix of it; None: the rounds asked.
  planned_rounds: Optional[int] = None
  # The mechanisms' own `dp.*` keys (`Mechanism.config`), by name; a key missing here
  # has its declared default (`param`).
  params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  # What the mechanism derived from the noise multiplier (`Mechanism.resolve`; the
  # Skellam query's scaled parameters), recorded in config.json under its name.
  derived: Optional[Mapping[str, Any]] = None
  num_parameters: Optional[int] = None  # the model's (distributed: its parameters)
  secure_sum: bool = False
  # The secure sums ran as the SecAgg+ protocol with these parameters
  # (`secagg.Parameters`); None: simulated in the clear.
  secure_protocol: Optional[Any] = None
  compression_bits: int = 0
  compression_threshold: int = 0
  sensitivity_factor: float = 1.0
  dropout: float = 0.0
  opted_out_users: int = 0
  reproducible_noise: bool = False
  reproducible_sampling: bool = False
  canaries: int = 0  # audit canaries among the population_size (fl_analytics.privacy.canaries)

  @property
  def accounted_noise_multiplier(self) -> float:
    return self.noise_multiplier / self.sensitivity_factor

  @property
  def scheme(self) -> sampling.Scheme:
    return sampling.get(self.sampling)

  def bounds(self, rounds: int) -> Optional[tuple[int, int]]:
    """(k, b): the most participations of a user in `rounds` rounds and their least
    separation under the scheme (None: a sampled scheme, no bound)."""
    if self.scheme.bounds is None:
      return None
    return self.scheme.bounds(self.clients_per_round, self.population_size, rounds,
                              self.participation)

  def param(self, key: 'ConfigKey'):
    """The value of a mechanism's own config key: given, or its declared default."""
    return self.params.get(key.name, key.default)


@dataclasses.dataclass(frozen=True)
class ConfigKey:
  """A `dp.*` config key a mechanism declares: the config files and the configuration
  reference take it from the declaration, so nothing outside the module names it."""

  name: str  # the key under `dp.`
  default: Any
  doc: str  # its meaning, for docs/configuration.md


def _no_check(settings: DpSettings) -> None:
  del settings


def _no_statement(settings: DpSettings, rounds: int) -> tuple[dict, str]:
  del rounds
  return {}, settings.scheme.note + '.'


def _same_settings(settings: DpSettings) -> DpSettings:
  return settings


def independent_noise(settings: DpSettings, rounds: int) -> np.ndarray:
  """The claimed covariance across `rounds` rounds of one coordinate of the noise added
  to the clipped sum: N(0, (noise_multiplier * clip)**2), drawn afresh every round."""
  return (settings.noise_multiplier * settings.clip)**2 * np.eye(rounds)


@dataclasses.dataclass(frozen=True)
class Mechanism:
  """One value of `dp.mechanism`: what it is, what it allows, what it builds."""

  name: str
  label: str  # in figures and tables
  title: str  # in messages: what it is, in a few words
  samplings: tuple[str, ...]  # the sampling schemes it is accounted for
  accountants: tuple[str, ...]  # the accountants that analyse it
  # (settings, record_specs, record_sum) -> its tff.aggregators factory; record_specs:
  # the model's trainable weights' TensorSpecs; record_sum: the inner sum of the
  # clipped records (secure sum, compression) or None.
  build: Callable[..., Any]
  # (settings, rounds) -> the dp_accounting event of `rounds` rounds as they ran.
  event: Optional[Callable[[DpSettings, int], dp_accounting.DpEvent]] = None
  check: Callable[[DpSettings], None] = _no_check  # its own arguments
  # (settings, rounds) -> (its fields of the privacy statement, its sampling note).
  statement: Callable[[DpSettings, int], tuple[dict, str]] = _no_statement
  # settings -> the settings with what follows from the noise multiplier filled in
  # (distributed: the scaled parameters); calibration calls it for every candidate.
  resolve: Callable[[DpSettings], DpSettings] = _same_settings
  rdp_orders: Optional[tuple] = None  # None: dp_accounting's default orders
  # `resolve` needs the model's number of parameters (`DpSettings.num_parameters`).
  needs_num_parameters: bool = False
  noise: str = ''  # what noise it adds, in words (privacy CLI)
  sampling_refusal: str = ''  # why the other sampling schemes are refused
  accountant_refusal: str = ''  # why the other accountants are refused
  secure_sum: bool = False  # `dp.secure_sum` (central DP over TFF's secure sum)
  secure_aggregation: bool = False  # it always sums over secure aggregation
  secure_sum_refusal: str = ''
  compression: bool = False  # `compression.bits` > 0
  compression_refusal: str = ''
  dropout: bool = True  # `clients.dropout` > 0
  dropout_refusal: str = ''
  fixed_clip: bool = False  # the clip is `dp.clip` in every round
  # `audit.canaries` > 0: canaries need a clip to bring them to (fl_analytics.privacy.canaries)
  canaries: bool = True
  canary_refusal: str = ''
  # Why its noise is guessable whatever `dp.reproducible_noise` says ('': it is not):
  # a library seeds it from the clock (`statement.randomness_caveats`).
  clock_seeded_noise: str = ''
  # Its own `dp.*` keys, with defaults and meanings (`DpSettings.param` reads them).
  config: tuple[ConfigKey, ...] = ()
  # (settings, rounds) -> what it claims of its noise: the covariance across `rounds`
  # rounds of one coordinate of the noise on the clipped sum (coordinates independent),
  # which the white-box audit tests (`fl_analytics.privacy.mechanism_audit`); None:
  # no claim beyond the accountant's epsilon.
  noise_covariance: Optional[Callable[[DpSettings, int], np.ndarray]] = independent_noise
  # The most rounds its white-box audit runs (None: any): adaptive clipping's clip
  # moves after the first round, and with it the noise.
  audit_rounds: Optional[int] = None
  color: str = 'black'
  marker: str = 'o'
  linestyle: str = '-'

  @property
  def private(self) -> bool:
    return self.event is not None


SAMPLED = ('poisson', 'fixed_size')  # the schemes with sampling amplification
# The production schedules: participations bounded, no amplification.
SCHEDULES = ('min_separation', 'available')


def sampled_gaussian_event(settings: DpSettings, rounds: int) -> dp_accounting.DpEvent:
  """`rounds` rounds of the Gaussian sum query on the sampling scheme's cohorts.

  The noise relative to the clipped sum's sensitivity: `noise_multiplier /
  sensitivity_factor`, halved again under replace-one neighbours (the sum moves by up
  to twice the clip). Under a schedule without amplification (`Scheme.bounds`), the
  Gaussian mechanism once per participation: k of them, however the rounds fall.
  """
  z = settings.accounted_noise_multiplier
  bounds = settings.bounds(rounds)
  if bounds is not None:
    return dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(z), bounds[0])
  return dp_accounting.SelfComposedDpEvent(settings.scheme.sampled_event(
      lambda sensitivity: dp_accounting.GaussianDpEvent(z / sensitivity),
      clients_per_round=settings.clients_per_round,
      population_size=settings.population_size), rounds)


def sampled_gaussian_statement(settings: DpSettings, rounds: int) -> tuple[dict, str]:
  note = settings.scheme.note
  bounds = settings.bounds(rounds)
  if bounds is not None:
    return {}, (note + f'; each of a user\'s at most {bounds[0]} participations is one '
                'Gaussian mechanism on the clipped sum (no amplification).')
  if settings.scheme.relation is dp_accounting.NeighboringRelation.REPLACE_ONE:
    note += ('; under replace-one neighbours the clipped sum moves by up to 2 * clip, '
             'so the accountant uses noise_multiplier / 2')
  return {}, note + '.'
