"""The DP mechanisms (`dp.mechanism`): one module each, and the registry.

Each module defines one `base.Mechanism`: what it allows (sampling schemes,
accountants, secure sum, compression, dropout), the checks of its own arguments, the
`tff.aggregators` factory it builds, its dp_accounting event and its part of the privacy
statement. Every other module asks this registry: the aggregator
(`fl_analytics.privacy.aggregators`), the accountant and the statement
(`fl_analytics.privacy.statement`), the config checks (`check_dropout`), the round
(`fl_analytics.runs.training`), the privacy CLI and the figures (`fl_analytics.reporting.plots`).

Adding a mechanism: a module here and one entry in `REGISTRY`; its own `dp.*` keys
are declared in it (`Mechanism.config`) and reach the config files, the settings and
the configuration reference from there. A mechanism that
dp_accounting has no event for defines one (`fl_analytics.privacy.accounting.RdpDpEvent`, as
`distributed` does).
"""

from __future__ import annotations

from fl_analytics.privacy.mechanisms import banded
from fl_analytics.privacy.mechanisms import blt
from fl_analytics.privacy.mechanisms import distributed
from fl_analytics.privacy.mechanisms import gaussian_adaptive
from fl_analytics.privacy.mechanisms import gaussian_fixed
from fl_analytics.privacy.mechanisms import none
from fl_analytics.privacy.mechanisms import tree
from fl_analytics.privacy.mechanisms.base import ConfigKey
from fl_analytics.privacy.mechanisms.base import DpSettings
from fl_analytics.privacy.mechanisms.base import Mechanism

REGISTRY: dict[str, Mechanism] = {m.MECHANISM.name: m.MECHANISM for m in (
    none, gaussian_fixed, gaussian_adaptive, tree, distributed, banded, blt)}


def get(name: str) -> Mechanism:
  if name not in REGISTRY:
    raise ValueError(
        f'dp.mechanism must be one of {", ".join(REGISTRY)}. Found {name!r}.')
  return REGISTRY[name]


def names(**capabilities) -> tuple[str, ...]:
  """The mechanisms with every given capability, e.g. `names(secure_sum=True)`."""
  return tuple(m.name for m in REGISTRY.values()
               if all(getattr(m, k) == v for k, v in capabilities.items()))


def config_keys() -> tuple[ConfigKey, ...]:
  """Every mechanism's own `dp.*` keys, in registry order (the config files add them
  under `dp`, at their defaults)."""
  keys = {}
  for m in REGISTRY.values():
    for key in m.config:
      if key.name in keys:
        raise ValueError(f'dp.{key.name} is declared by two mechanisms.')
      keys[key.name] = key
  return tuple(keys.values())


def add_config_keys(dp) -> None:
  """Adds every mechanism's own keys at their defaults to a config's `dp` section."""
  for key in config_keys():
    dp[key.name] = key.default


def settings(**values) -> DpSettings:
  """`DpSettings` from loose values: its fields, and the mechanisms' own keys by name
  (`bits=12`), which go into `params`."""
  own = {k.name for k in config_keys()}
  params = {**values.pop('params', {}),
            **{k: values.pop(k) for k in list(values) if k in own}}
  return DpSettings(**values, params=params)


def check_dropout(mechanism: str, dropout: float) -> None:
  """ValueError if `clients.dropout` > 0 would break `mechanism`'s accounting
  (`Mechanism.dropout_refusal` says why; `statement.dropout_note` why the others hold)."""
  if not dropout:
    return
  m = get(mechanism)
  if not m.dropout:
    raise ValueError(
        f'clients.dropout > 0 is not supported with dp.mechanism={mechanism}: '
        + m.dropout_refusal)


__all__ = ['ConfigKey', 'DpSettings', 'Mechanism', 'REGISTRY', 'add_config_keys',
           'check_dropout', 'config_keys', 'get', 'names', 'settings']
