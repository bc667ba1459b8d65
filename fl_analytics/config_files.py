"""Config files and dotted-key overrides: one place for configs, sweeps, replays, tests.

Configs are Python files whose `get_config()` returns an `ml_collections.ConfigDict`
(`configs/*.py`); a config that extends another loads it by path with `load`, so config
files need neither a package on `sys.path` nor the sweep runner. Overrides are dotted
keys (`dp.mechanism`) set with `apply_overrides`, which refuses a key the config does
not have. This module imports neither TensorFlow nor TFF.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any, Mapping


def load(path: str):
  """Calls `get_config()` of the Python config file at `path`."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f'Config file not found: {path}')
  spec = importlib.util.spec_from_file_location(
      '_config_' + os.path.basename(path).replace('.', '_'), path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, 'get_config'):
    raise ValueError(f'{path} defines no get_config().')
  return module.get_config()


def load_sibling(config_file: str, name: str):
  """The config `name` (e.g. 'churn.py') in the directory of `config_file` (`__file__`)."""
  return load(os.path.join(os.path.dirname(os.path.abspath(config_file)), name))


def apply_overrides(config, overrides: Mapping[str, Any], *, source: str):
  """A copy of `config` with dotted keys set; an unknown key raises ValueError naming
  it and `source` (where the overrides came from)."""
  config = config.copy_and_resolve_references()
  for key, value in overrides.items():
    node = config
    *path, last = key.split('.')
    for part in path:
      if part not in node:
        raise ValueError(f'{source}: unknown config key {key!r}.')
      node = node[part]
    if last not in node:
      raise ValueError(f'{source}: unknown config key {key!r}.')
    node[last] = value
  return config
