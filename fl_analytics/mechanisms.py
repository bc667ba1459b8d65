"""The DP mechanisms and what each allows, in one table (`dp.mechanism`).

Every module that has to know what a mechanism allows asks this table: the aggregator
checks (`fl_analytics.aggregators`: secure sum, compression, fixed clip), the
accountant (`fl_analytics.privacy`: which sampling schemes and accountants analyse it,
which analysis it needs), the device model (`fl_analytics.devices`: dropout) and the
figures (`fl_analytics.plots`: label and style). Each mechanism's TFF aggregator is
built in `aggregators.build_model_aggregator` and its dp_accounting events in
`privacy`; a module per mechanism holding those too is the next step (issue 13).

This module imports nothing beyond the standard library.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Mechanism:
  """One value of `dp.mechanism`: what it is and what it allows."""

  name: str
  label: str  # in figures and tables
  reference: str  # the paper or API it follows
  samplings: tuple[str, ...]  # the sampling schemes it is accounted for
  accountants: tuple[str, ...]  # the accountants that analyse it
  # How the accountant analyses it: 'none' (no privacy), 'sampled_gaussian'
  # (dp_accounting's sampled Gaussian events), 'tree' (tree aggregation, one tree per
  # pass), 'skellam' (distributed Skellam, `privacy.distributed_epsilon`).
  analysis: str
  secure_sum: bool = False  # `dp.secure_sum` (central DP over TFF's secure sum)
  secure_sum_refusal: str = ''
  compression: bool = False  # `compression.bits` > 0
  compression_refusal: str = ''
  dropout: bool = True  # `clients.dropout` > 0
  dropout_refusal: str = ''
  fixed_clip: bool = False  # the clip is `dp.clip` in every round
  color: str = 'black'
  marker: str = 'o'
  linestyle: str = '-'

  @property
  def private(self) -> bool:
    return self.analysis != 'none'


_ALL_SAMPLINGS = ('poisson', 'fixed_size', 'shuffle')
_SAMPLED = ('poisson', 'fixed_size')

NONE = Mechanism(
    name='none', label='non-private', reference='plain FedAvg (UnweightedMeanFactory)',
    samplings=_ALL_SAMPLINGS, accountants=('rdp', 'pld'), analysis='none',
    compression=True)
GAUSSIAN_FIXED = Mechanism(
    name='gaussian_fixed', label='fixed clipping',
    reference='McMahan et al. 2018; DifferentiallyPrivateFactory.gaussian_fixed',
    samplings=_SAMPLED, accountants=('rdp', 'pld'), analysis='sampled_gaussian',
    secure_sum=True, compression=True, fixed_clip=True,
    color='tab:orange', marker='s', linestyle='--')
GAUSSIAN_ADAPTIVE = Mechanism(
    name='gaussian_adaptive', label='adaptive clipping',
    reference='Andrew et al. 2021; DifferentiallyPrivateFactory.gaussian_adaptive',
    samplings=_SAMPLED, accountants=('rdp', 'pld'), analysis='sampled_gaussian',
    secure_sum_refusal=("TFF's secure sum needs fixed bounds, and with adaptive clipping "
                        'its quantization error relative to the clip is unbounded.'),
    compression_refusal=("no analysis here covers quantization's effect on the "
                         'clip-count query'),
    color='tab:blue', marker='o', linestyle='-')
TREE = Mechanism(
    name='tree', label='DP-FTRL (tree)',
    reference='Kairouz et al. 2021; TF Privacy TreeResidualSumQuery',
    samplings=('shuffle',), accountants=('rdp',), analysis='tree',
    secure_sum=True, compression=True, fixed_clip=True,
    color='tab:green', marker='^', linestyle=':')
DISTRIBUTED = Mechanism(
    name='distributed', label='distributed Skellam',
    reference='Agarwal, Kairouz, Liu 2021; TFF DistributedDpSumFactory',
    samplings=('fixed_size',), accountants=('rdp',), analysis='skellam',
    compression_refusal='it already quantizes updates to dp.bits',
    dropout=False,
    dropout_refusal=('each client adds a share of the noise, so clients that fail to '
                     'report would leave less noise than the accountant assumes.'),
    fixed_clip=True, color='tab:red', marker='D', linestyle='-.')

REGISTRY: dict[str, Mechanism] = {
    m.name: m for m in (NONE, GAUSSIAN_FIXED, GAUSSIAN_ADAPTIVE, TREE, DISTRIBUTED)}


def get(name: str) -> Mechanism:
  if name not in REGISTRY:
    raise ValueError(
        f'dp.mechanism must be one of {", ".join(REGISTRY)}. Found {name!r}.')
  return REGISTRY[name]


def names(**capabilities) -> tuple[str, ...]:
  """The mechanisms with every given capability, e.g. `names(secure_sum=True)`."""
  return tuple(m.name for m in REGISTRY.values()
               if all(getattr(m, k) == v for k, v in capabilities.items()))
