"""Config files and dotted-key overrides: one place for configs, sweeps, replays, tests.

Configs are Python files whose `get_config()` returns an `ml_collections.ConfigDict`
(`configs/*.py`); a config that extends another loads it by path with `load`, so config
files need neither a package on `sys.path` nor the sweep runner. Overrides are dotted
keys (`dp.mechanism`) set with `apply_overrides`, which refuses a key the config does
not have. This module imports neither TensorFlow nor TFF.
"""

from __future__ import annotations

import importlib.util
import io
import os
import re
import tokenize
from typing import Any, Mapping, Sequence


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


_KEY_LINE = re.compile(r'^\s*c\.([A-Za-z_][\w.]*)\s*=(?!=)')


def _trailing_comment(line: str) -> str:
  """The comment at the end of one line of Python, '' if none."""
  try:
    tokens = list(tokenize.generate_tokens(io.StringIO(line).readline))
  except (tokenize.TokenError, SyntaxError):
    return ''
  return next((t.string[1:].strip() for t in tokens if t.type == tokenize.COMMENT), '')


def key_comments(path: str) -> list[tuple[list[str], str]]:
  """The documented keys of a config file, in file order: `([keys], comment)`.

  A `c.KEY = ...` line is documented by the comment lines right above it and its own
  trailing comment. Keys on consecutive lines after a documented one, with no comment of
  their own, share its comment (one row of the reference: `data.min_time`,
  `data.max_time`). A section (`c.dp = ml_collections.ConfigDict()`) is a row of its
  own, its comment the section's note. This is what `docs/configuration.md` is generated from
  (`experiments/config_reference.py`), so a config file is its own reference.
  """
  rows: list[tuple[list[str], str]] = []
  block: list[str] = []
  open_row = False  # the last row may still take keys of the next lines
  with open(path) as f:
    for line in f:
      stripped = line.strip()
      match = _KEY_LINE.match(line)
      if stripped.startswith('#'):
        block.append(stripped[1:].strip())
        open_row = False
      elif match:
        comment = ' '.join(block + [_trailing_comment(line)]).strip()
        section = 'ConfigDict()' in line  # a section's comment is the section's note
        if comment or section or not (open_row and rows):
          rows.append(([match.group(1)], comment))
        else:
          rows[-1][0].append(match.group(1))
        block, open_row = [], not section
      else:
        block, open_row = [], False
  return rows


def _format_default(value) -> str:
  if value is None:
    return 'unset'
  if isinstance(value, str):
    return f'`{value}`'
  return f'`{value!r}`'


def _leaf_defaults(config) -> dict[str, Any]:
  """Every leaf key of `config` (dotted) with its value."""
  out = {}
  for key, value in config.items():
    if hasattr(value, 'items'):
      out.update({f'{key}.{k}': v for k, v in _leaf_defaults(value).items()})
    else:
      out[key] = value
  return out


def _table(rows: list[tuple[list[str], str]], defaults: Mapping[str, Any]) -> list[str]:
  lines = ['| key | default | meaning |', '|---|---|---|']
  for keys, comment in rows:
    keys = [k for k in keys if k in defaults]
    if keys:
      lines.append('| ' + ', '.join(f'`{k}`' for k in keys) + ' | '
                   + ', '.join(_format_default(defaults[k]) for k in keys) + ' | '
                   + comment.replace('|', '\\|') + ' |')
  return lines


def reference_markdown(base_path: str, extensions: Mapping[str, str] = {},
                       declared: Sequence[tuple[list[str], str]] = ()) -> str:
  """The configuration reference of the config file `base_path` (and of the files in
  `extensions`, {task: path}, for the keys they add or change), as markdown.
  `declared`: rows for keys the config adds from a declaration rather than a line of
  its own (a mechanism's `dp.*` keys), placed after the rows of their section."""
  base = load(base_path)
  defaults = _leaf_defaults(base)
  rows = key_comments(base_path)
  for keys, comment in declared:
    section = keys[0].partition('.')[0]
    last = max((i for i, (ks, _) in enumerate(rows) if ks[0].startswith(section + '.')),
               default=len(rows) - 1)
    rows.insert(last + 1, (keys, comment))
  sections = {keys[0]: comment for keys, comment in rows if keys[0] not in defaults}
  lines = []
  for section in [None, *sections]:
    in_section = [(ks, c) for ks, c in rows
                  if (ks[0].partition('.')[0] if '.' in ks[0] else None) == section
                  and ks[0] in defaults]
    if not in_section:
      continue
    lines += ['', f'## `{section}`' if section else '## Top level', '']
    if section and sections[section]:
      lines += [sections[section], '']
    lines += _table(in_section, defaults)
  for task, path in extensions.items():
    changed = _leaf_defaults(load(path))
    rows = [(ks, c) for ks, c in key_comments(path)
            if any(k in changed and changed[k] != defaults.get(k, object()) for k in ks)]
    lines += ['', f'## `task={task}` ({os.path.basename(path)})', '',
              'Keys it adds, and defaults it changes; every other key is as above.', '']
    lines += _table(rows, changed)
  return '\n'.join(lines).lstrip('\n') + '\n'
