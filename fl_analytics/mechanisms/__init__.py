"""The DP mechanisms (`dp.mechanism`): one module each, and the registry.

Each module defines one `base.Mechanism`: what it allows (sampling schemes,
accountants, secure sum, compression, dropout), the checks of its own arguments, the
`tff.aggregators` factory it builds, its dp_accounting event and its part of the privacy
statement. Every other module asks this registry: the aggregator
(`fl_analytics.aggregators`), the accountant and the statement
(`fl_analytics.privacy`), the devices (`fl_analytics.devices`: dropout), the round
(`fl_analytics.training`), the privacy CLI and the figures (`fl_analytics.plots`).

Adding a mechanism: a module here and one entry in `REGISTRY`. A mechanism that
dp_accounting has no event for defines one (`fl_analytics.accounting.RdpDpEvent`, as
`distributed` does).
"""

from __future__ import annotations

from fl_analytics.mechanisms import distributed
from fl_analytics.mechanisms import gaussian_adaptive
from fl_analytics.mechanisms import gaussian_fixed
from fl_analytics.mechanisms import none
from fl_analytics.mechanisms import tree
from fl_analytics.mechanisms.base import DpSettings
from fl_analytics.mechanisms.base import Mechanism

REGISTRY: dict[str, Mechanism] = {m.MECHANISM.name: m.MECHANISM for m in (
    none, gaussian_fixed, gaussian_adaptive, tree, distributed)}


def get(name: str) -> Mechanism:
  if name not in REGISTRY:
    raise ValueError(
        f'dp.mechanism must be one of {", ".join(REGISTRY)}. Found {name!r}.')
  return REGISTRY[name]


def names(**capabilities) -> tuple[str, ...]:
  """The mechanisms with every given capability, e.g. `names(secure_sum=True)`."""
  return tuple(m.name for m in REGISTRY.values()
               if all(getattr(m, k) == v for k, v in capabilities.items()))


__all__ = ['DpSettings', 'Mechanism', 'REGISTRY', 'get', 'names']
