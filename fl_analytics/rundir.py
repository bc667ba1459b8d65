"""One run, one directory: atomic files, the metrics table and state checkpoints.

Layout of a run directory (the contract that plots and sweeps read)::

  config.json      the resolved config (calibrated noise multiplier included)
  metrics.csv      one row per completed round
  privacy.json     the privacy statement for the rounds completed so far
  checkpoints/     round_NNNNNN.npz: the TFF server state after that round
  tensorboard/     TensorBoard summaries of the metrics
  worker.log       output of the TFF worker process

Every file is written to a temporary file in the same directory and renamed over the
old one (`os.replace` is atomic on POSIX), so a crash leaves either the old or the new
version, never half of one. This module does not import TensorFlow.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import os
import re
import tempfile
from typing import Any, Iterable, Optional, Sequence

import numpy as np

CONFIG_FILE = 'config.json'
METRICS_FILE = 'metrics.csv'
PRIVACY_FILE = 'privacy.json'
CHECKPOINT_DIR = 'checkpoints'
TENSORBOARD_DIR = 'tensorboard'
WORKER_LOG = 'worker.log'
_CKPT_RE = re.compile(r'^round_(\d{6,})\.npz$')


@functools.lru_cache(maxsize=None)
def _umask() -> int:
  mask = os.umask(0o022)  # the only way to read it; restored at once
  os.umask(mask)
  return mask


def atomic_write_bytes(path: str, data: bytes) -> None:
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix='.tmp-', suffix=os.path.basename(path))
  try:
    with os.fdopen(fd, 'wb') as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, 0o666 & ~_umask())  # as open() would create it, not mkstemp's 0600
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def _json_default(value):
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, (tuple, set)):
    return list(value)
  raise TypeError(f'Not JSON serializable: {value!r}')


def write_json(path: str, obj: Any) -> None:
  text = json.dumps(obj, indent=2, sort_keys=True, default=_json_default, allow_nan=False)
  atomic_write_bytes(path, (text + '\n').encode())


def read_json(path: str) -> Any:
  with open(path) as f:
    return json.load(f)


def _format(value) -> str:
  if value is None:
    return ''
  if isinstance(value, (float, np.floating)):
    return 'inf' if math.isinf(value) else repr(float(value))
  return str(value)


def write_csv(path: str, columns: Sequence[str], rows: Iterable[dict]) -> None:
  buf = io.StringIO()
  writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator='\n')
  writer.writeheader()
  for row in rows:
    writer.writerow({k: _format(row.get(k)) for k in columns})
  atomic_write_bytes(path, buf.getvalue().encode())


def read_csv(path: str) -> list[dict[str, str]]:
  with open(path, newline='') as f:
    return list(csv.DictReader(f))


def to_float(text: str) -> Optional[float]:
  """A metrics.csv cell as a float; None for an empty cell."""
  return None if text == '' else float(text)


# --- Checkpoints ---------------------------------------------------------------------


def checkpoint_path(workdir: str, round_num: int) -> str:
  return os.path.join(workdir, CHECKPOINT_DIR, f'round_{round_num:06d}.npz')


def latest_checkpoint_round(workdir: str) -> int:
  """The last round with a checkpoint, 0 if none."""
  directory = os.path.join(workdir, CHECKPOINT_DIR)
  if not os.path.isdir(directory):
    return 0
  rounds = [int(m.group(1)) for m in map(_CKPT_RE.match, os.listdir(directory)) if m]
  return max(rounds, default=0)


def save_checkpoint(workdir: str, round_num: int, leaves: Sequence[Any], keep: int = 2):
  """Saves the flattened server state of `round_num`; keeps the newest `keep`."""
  buf = io.BytesIO()
  np.savez(buf, *[np.asarray(leaf) for leaf in leaves])
  atomic_write_bytes(checkpoint_path(workdir, round_num), buf.getvalue())
  directory = os.path.join(workdir, CHECKPOINT_DIR)
  old = sorted(
      int(m.group(1)) for m in map(_CKPT_RE.match, os.listdir(directory)) if m
  )[:-keep]
  for r in old:
    os.unlink(checkpoint_path(workdir, r))


def load_checkpoint(workdir: str, round_num: int) -> list[Any]:
  """The flattened leaves saved for `round_num`, as numpy scalars/arrays/bytes."""
  with np.load(checkpoint_path(workdir, round_num), allow_pickle=False) as data:
    arrays = [data[f'arr_{i}'] for i in range(len(data.files))]
  leaves = []
  for a in arrays:
    if a.ndim == 0:
      value = a[()]
      leaves.append(bytes(value) if isinstance(value, bytes) else value)
    else:
      leaves.append(a)
  return leaves


# --- Config identity ----------------------------------------------------------------


def flatten_dict(d: dict, prefix: str = '') -> dict[str, Any]:
  out = {}
  for k, v in d.items():
    key = f'{prefix}{k}'
    if isinstance(v, dict):
      out.update(flatten_dict(v, key + '.'))
    else:
      out[key] = v
  return out


def config_differences(
    stored: dict, new: dict, ignore: Sequence[str] = ()
) -> list[str]:
  """Human-readable differences between two config dicts, ignoring some keys."""
  a, b = flatten_dict(stored), flatten_dict(new)
  diffs = []
  for key in sorted(set(a) | set(b)):
    if any(key == i or key.startswith(i + '.') for i in ignore):
      continue
    va, vb = a.get(key, '<absent>'), b.get(key, '<absent>')
    if isinstance(va, list) or isinstance(vb, list):
      va, vb = list(va) if isinstance(va, (list, tuple)) else va, list(vb) if isinstance(vb, (list, tuple)) else vb
    if va != vb:
      diffs.append(f'{key}: run has {va!r}, command has {vb!r}')
  return diffs
