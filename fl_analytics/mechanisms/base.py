"""What a DP mechanism is here: what it allows, its checks and its TFF aggregator.

A `Mechanism` is one value of `dp.mechanism`. Its module (`fl_analytics/mechanisms/
NAME.py`) defines it: what it allows (sampling schemes, accountants, secure sum,
compression, dropout), how the accountant analyses it (`analysis`), the checks of its
own arguments, and the `tff.aggregators` factory it runs. The accounting mathematics
itself stays in `fl_analytics.privacy` (dp_accounting only), which asks the mechanism's
`analysis`. Importing this package imports neither TensorFlow nor TFF; the builders
import TFF when they run.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional


@dataclasses.dataclass(frozen=True)
class AggregatorSettings:
  """Everything a mechanism's aggregator is built from (resolved config values)."""

  noise_multiplier: float
  clip: float
  clients_per_round: float
  target_unclipped_quantile: float = 0.5
  clip_learning_rate: float = 0.2
  noise_seed: Optional[int] = None  # seeded noise (simulation); None: TF Privacy's
  record_specs: Any = None  # tree: the model's trainable weights' TensorSpecs
  restart_period: Optional[int] = None  # tree: rounds per pass
  bits: int = 16  # distributed: bit width of the modular secure sum
  record_sum: Any = None  # the inner sum of clipped records (secure sum, compression)


def _no_check(settings: AggregatorSettings) -> None:
  del settings


@dataclasses.dataclass(frozen=True)
class Mechanism:
  """One value of `dp.mechanism`: what it is, what it allows, what it builds."""

  name: str
  label: str  # in figures and tables
  samplings: tuple[str, ...]  # the sampling schemes it is accounted for
  accountants: tuple[str, ...]  # the accountants that analyse it
  # How `fl_analytics.privacy` analyses it: 'none' (no privacy), 'sampled_gaussian'
  # (dp_accounting's sampled Gaussian events), 'tree' (tree aggregation, one tree per
  # pass), 'skellam' (distributed Skellam, `privacy.distributed_epsilon`).
  analysis: str
  build: Callable[[AggregatorSettings], Any]  # its tff.aggregators factory
  check: Callable[[AggregatorSettings], None] = _no_check  # its own arguments
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


SAMPLED = ('poisson', 'fixed_size')  # the schemes with sampling amplification
