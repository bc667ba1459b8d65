"""One run, one directory: atomic files, the metrics table and state checkpoints.

Layout of a run directory (the contract that plots and sweeps read)::

  config.json      the resolved config (calibrated noise multiplier included)
  metrics.csv      one row per completed round
  privacy.json     the privacy statement for the rounds completed so far
  checkpoints/     round_NNNNNN.npz: the TFF server state after that round
  evaluation.json  the final evaluation (written last: it marks the run as evaluated)
  calibration.csv  churn: the reliability bins; figures/calibration.png draws them
  eval_users.csv   one row per held-out user, only with evaluation.per_user_rows
  tensorboard/     TensorBoard summaries of the metrics
  worker.log       output of the TFF worker process
  .lock            held (flock) by the process that runs in the directory
  secret_sampling_seed   with dp.reproducible_sampling=False: the sampling seed (0600),
                   never exported

Every file is written to a temporary file in the same directory and renamed over the
old one (`os.replace` is atomic on POSIX), so a crash leaves either the old or the new
version, never half of one. `incomplete_reasons` is the one definition of a finished
run, used by `train.py` and by sweeps; `locked` keeps two processes out of one
directory. This module does not import TensorFlow.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import functools
import hashlib
import io
import json
import math
import os
import re
import shutil
import tempfile
import zipfile
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

import numpy as np

CONFIG_FILE = 'config.json'
METRICS_FILE = 'metrics.csv'
PRIVACY_FILE = 'privacy.json'
CHECKPOINT_DIR = 'checkpoints'
TENSORBOARD_DIR = 'tensorboard'
WORKER_LOG = 'worker.log'
EVALUATION_FILE = 'evaluation.json'
AUDIT_FILE = 'audit.json'
USERS_FILE = 'eval_users.csv'
CALIBRATION_FILE = 'calibration.csv'
FIGURE_DIR = 'figures'
LOCK_FILE = '.lock'
SECRET_SAMPLING_SEED_FILE = 'secret_sampling_seed'
_CKPT_RE = re.compile(r'^round_(\d{6,})\.npz$')


class RunDirectoryError(Exception):
  """A run directory that cannot be used as it is; the message names the path, what is
  wrong and what to do."""


@functools.lru_cache(maxsize=None)
def _umask() -> int:
  mask = os.umask(0o022)  # the only way to read it; restored at once
  os.umask(mask)
  return mask


def atomic_write_bytes(path: str, data: bytes, *, mode: Optional[int] = None) -> None:
  """Writes `path` atomically, with `mode` (default: as open() would, by the umask).

  On failure (a full disk, say) `path` is as it was, no temporary file is left, and
  the OSError names `path`."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix='.tmp-', suffix=os.path.basename(path))
  try:
    with os.fdopen(fd, 'wb') as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    # As open() would create it, not mkstemp's 0600, unless a mode is asked for.
    os.chmod(tmp, 0o666 & ~_umask() if mode is None else mode)
    os.replace(tmp, path)
  except BaseException as e:
    if os.path.exists(tmp):
      os.unlink(tmp)
    if isinstance(e, OSError) and e.filename is None:  # e.g. a full disk: name the file
      raise OSError(e.errno, e.strerror or str(e), path) from e
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


_JSON_TYPES = {list: 'list', type(None): 'null', str: 'string', int: 'number',
               float: 'number', bool: 'boolean'}


def read_json(path: str) -> dict[str, Any]:
  """The JSON object in `path` (every JSON file fl-analytics writes is one);
  RunDirectoryError naming the file if it is a directory, not JSON or not an object."""
  try:
    with open(path, encoding='utf-8') as f:
      value = json.load(f)
  except IsADirectoryError:
    raise RunDirectoryError(f'{path} is a directory, not the JSON file fl-analytics '
                            'writes there. Move it away, or use a new directory.') from None
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise RunDirectoryError(
        f'{path} is not valid JSON ({e}); it was damaged outside fl-analytics (every '
        'file here is written atomically). Restore it, or use a new directory.') from e
  if not isinstance(value, dict):
    raise RunDirectoryError(
        f'{path} holds a JSON {_JSON_TYPES.get(type(value), type(value).__name__)}, not '
        'the object fl-analytics writes; '
        'it was damaged outside fl-analytics. Restore it, or use a new directory.')
  return value


def _format(value) -> str:
  if value is None:
    return ''
  if isinstance(value, (float, np.floating)):
    return 'inf' if math.isinf(value) else repr(float(value))
  return str(value)


def write_csv(path: str, columns: Sequence[str], rows: Iterable[dict]) -> str:
  """Writes `rows` as CSV to `path`, atomically; returns the SHA-256 of the bytes
  written (what a checkpoint's seal holds for metrics.csv), so nobody reads them back."""
  buf = io.StringIO()
  writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator='\n')
  writer.writeheader()
  for row in rows:
    writer.writerow({k: _format(row.get(k)) for k in columns})
  data = buf.getvalue().encode()
  atomic_write_bytes(path, data)
  return hashlib.sha256(data).hexdigest()


def read_csv(path: str) -> list[dict[str, str]]:
  with open(path, newline='') as f:
    return list(csv.DictReader(f))


def to_float(text: str) -> Optional[float]:
  """A metrics.csv cell as a float; None for an empty cell."""
  return None if text == '' else float(text)


def read_metrics(path: str) -> list[dict[str, str]]:
  """The rows of a run's metrics.csv, checked: rounds 1, 2, ... in order, numbers.

  Raises RunDirectoryError naming the file and the line of the first bad row.
  """
  try:
    rows = read_csv(path)
  except (csv.Error, UnicodeDecodeError, IsADirectoryError) as e:
    raise RunDirectoryError(f'{path} cannot be read as CSV ({e}).') from e
  for line, row in enumerate(rows, 2):  # line 1 is the header
    try:
      if row.get('round') != str(line - 1):
        raise ValueError(f'round {row.get("round")!r} where {line - 1} was expected')
      for key, value in row.items():
        if key is None or value is None:
          raise ValueError('a different number of cells than the header')
        to_float(value)
    except ValueError as e:
      raise RunDirectoryError(
          f'{path}, line {line}: not a metrics row written by fl-analytics ({e}). '
          'Restore the file, or use a new directory.') from e
  return rows


# --- Checkpoints ---------------------------------------------------------------------


def checkpoint_path(workdir: str, round_num: int) -> str:
  return os.path.join(workdir, CHECKPOINT_DIR, f'round_{round_num:06d}.npz')


def checkpoint_rounds(workdir: str) -> list[int]:
  """The rounds with a checkpoint, ascending."""
  directory = os.path.join(workdir, CHECKPOINT_DIR)
  if not os.path.lexists(directory):
    return []
  if not os.path.isdir(directory):
    raise RunDirectoryError(
        f'{directory} is not a directory: the run\'s checkpoints cannot be read or '
        'written. Move it away (or use a new --workdir).')
  return sorted(int(m.group(1)) for m in map(_CKPT_RE.match, os.listdir(directory)) if m)


def latest_checkpoint_round(workdir: str) -> int:
  """The last round with a checkpoint, 0 if none."""
  return max(checkpoint_rounds(workdir), default=0)


def file_digest(path: str) -> str:
  """SHA-256 of the file's bytes."""
  h = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 22), b''):
      h.update(block)
  return h.hexdigest()


def metrics_digest(path: str, rounds: int) -> Optional[str]:
  """SHA-256 of metrics.csv's header and first `rounds` rows, as bytes; None when it
  has fewer. A checkpoint's seal holds it for its round (`save_checkpoint`)."""
  with open(path, 'rb') as f:
    lines = f.read().splitlines(keepends=True)
  if len(lines) < rounds + 1:
    return None
  return hashlib.sha256(b''.join(lines[:rounds + 1])).hexdigest()


_SEAL_PREFIX = 'seal_'


def save_checkpoint(workdir: str, round_num: int, leaves: Sequence[Any], keep: int = 2,
                    seal: Optional[dict[str, str]] = None):
  """Saves the flattened server state of `round_num`; keeps the newest `keep`.

  `seal`: digests of what the state belongs with (the metrics rows up to this round,
  the secret seed), read back by `load_latest_checkpoint`'s `belongs`."""
  buf = io.BytesIO()
  np.savez(buf, *[np.asarray(leaf) for leaf in leaves],
           **{_SEAL_PREFIX + k: np.asarray(v) for k, v in (seal or {}).items()})
  atomic_write_bytes(checkpoint_path(workdir, round_num), buf.getvalue())
  for r in checkpoint_rounds(workdir)[:-keep]:
    os.unlink(checkpoint_path(workdir, r))


def load_checkpoint(workdir: str, round_num: int) -> list[Any]:
  """The flattened leaves saved for `round_num`, as numpy scalars/arrays/bytes."""
  return _load_checkpoint(workdir, round_num)[0]


def _load_checkpoint(workdir: str, round_num: int) -> tuple[list[Any], dict[str, str]]:
  """(the leaves, the seal) of `round_num`'s checkpoint."""
  with np.load(checkpoint_path(workdir, round_num), allow_pickle=False) as data:
    count = sum(1 for name in data.files if name.startswith('arr_'))
    arrays = [data[f'arr_{i}'] for i in range(count)]
    seal = {name[len(_SEAL_PREFIX):]: str(data[name]) for name in data.files
            if name.startswith(_SEAL_PREFIX)}
  leaves = []
  for a in arrays:
    if a.ndim == 0:
      value = a[()]
      leaves.append(bytes(value) if isinstance(value, bytes) else value)
    else:
      leaves.append(a)
  return leaves, seal


def load_latest_checkpoint(
    workdir: str, *, warn: Callable[[str], None],
    belongs: Callable[[int, dict[str, str]], Optional[str]] = lambda r, seal: None,
) -> tuple[int, Optional[list[Any]]]:
  """The newest checkpoint that loads and belongs, as (round, leaves); (0, None) if
  there is none.

  A checkpoint that cannot be read (truncated, zeroed, overwritten) is renamed to
  `*.corrupt`, `warn` is told, and the one before it is used: the rounds after it are
  run again. `belongs(round, seal)` says why a readable checkpoint is not the run's
  (None: it is): one that does not belong while an older one does is another run's
  and is set aside the same way; when none belongs, the fault is in what they are
  checked against, and RunDirectoryError gives the newest's reason, renaming nothing.
  When every checkpoint is unreadable, RunDirectoryError.
  """
  rounds = checkpoint_rounds(workdir)
  foreign = []  # (path, reason) of readable checkpoints that do not belong
  for round_num in reversed(rounds):
    path = checkpoint_path(workdir, round_num)
    try:
      leaves, seal = _load_checkpoint(workdir, round_num)
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
      _set_aside(path, f'cannot be read ({type(e).__name__}: {e})', warn)
      continue
    reason = belongs(round_num, seal)
    if reason is None:
      for other, why in foreign:
        _set_aside(other, why, warn)
      return round_num, leaves
    foreign.append((path, reason))
  if foreign:
    raise RunDirectoryError(f'{foreign[0][1]}. Restore the file, or use a new directory.')
  if rounds:
    raise RunDirectoryError(
        f'No checkpoint in {os.path.join(workdir, CHECKPOINT_DIR)} can be read (see the '
        'warnings above); the run cannot be resumed. Use a new directory.')
  return 0, None


def _set_aside(path: str, why: str, warn: Callable[[str], None]) -> None:
  os.replace(path, path + '.corrupt')
  warn(f'{path} {why}; moved to {os.path.basename(path)}.corrupt. Resuming from the '
       'checkpoint before it; the rounds after that are run again.')


def secret_seed(workdir: str, *, resuming: bool = False) -> int:
  """The run's secret sampling seed: drawn from the OS on first use, then read back.

  Written with mode 0600 and never copied into exported results, so the cohorts are
  unknown to whoever reads `config.json`, while a resumed run samples what an
  uninterrupted one would have. A `resuming` run whose seed file is gone is refused: a
  new seed would sample other cohorts than the rounds already run.
  """
  import secrets  # pylint: disable=g-import-not-at-top

  path = os.path.join(workdir, SECRET_SAMPLING_SEED_FILE)
  if os.path.exists(path):
    with open(path) as f:
      text = f.read().strip()
    if not text.isdigit():
      raise RunDirectoryError(f'{path} does not hold a seed; the run cannot resume with '
                              'the same cohorts. Use a new directory.')
    return int(text)
  if resuming:
    raise RunDirectoryError(
        f'{path} is missing, but the run in {workdir} has completed rounds: a new secret '
        'seed would sample other cohorts than those rounds did. Restore the file, or '
        'start the run over in a new --workdir.')
  seed = secrets.randbits(63)
  atomic_write_bytes(path, f'{seed}\n'.encode(), mode=0o600)  # never readable by others
  return seed


# --- Locking and completeness --------------------------------------------------------


@contextlib.contextmanager
def locked(directory: str) -> Iterator[None]:
  """Holds an exclusive lock on `directory` (created if missing) while the block runs.

  `fcntl.flock` on `directory/.lock`, which records the holder's pid: a second process
  (a second `train.py` or sweep on the same directory) gets RunDirectoryError naming
  that pid. The kernel drops the lock when its holder dies, however it dies. A
  directory this call created that holds nothing but the lock file when the block
  ends (a launch refused before writing anything) is removed again.
  """
  created = not os.path.isdir(directory)
  lock = os.path.join(directory, LOCK_FILE)
  if os.path.lexists(lock) and not os.path.isfile(lock):
    raise RunDirectoryError(f'{lock} is not a regular file, so the directory cannot be '
                            'locked. Remove it, or use another directory.')
  try:
    os.makedirs(directory, exist_ok=True)
    fd = os.open(os.path.join(directory, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o666)
  except OSError as e:
    raise RunDirectoryError(f'Cannot use {directory} as a run directory: {e}.') from e
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.pread(fd, 32, 0).decode(errors='replace').strip() or 'unknown'
      raise RunDirectoryError(
          f'{directory} is in use by another process (pid {holder}); two processes '
          'would overwrite each other. Wait for it to finish, stop it, or use another '
          'directory.') from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f'{os.getpid()}\n'.encode(), 0)
    try:
      yield
    finally:
      if created and os.listdir(directory) == [LOCK_FILE]:
        os.unlink(os.path.join(directory, LOCK_FILE))
        os.rmdir(directory)
  finally:
    os.close(fd)


def check_regular_files(directory: str, names: Sequence[str]) -> None:
  """RunDirectoryError naming the first of `names` in `directory` that exists but is
  not a regular file (a directory, a FIFO): it could be neither read nor replaced."""
  for name in names:
    path = os.path.join(directory, name)
    if os.path.lexists(path) and not os.path.isfile(path):
      raise RunDirectoryError(f'{path} is not a regular file, so the run cannot read or '
                              'replace it. Move it away, or use a new directory.')


def check_writable_directory(directory: str, flag: str = '--workdir') -> None:
  """RunDirectoryError unless `directory` (the value of `flag`) is, or can be created
  as, a writable directory.

  Checked before any data is loaded, so a bad --workdir fails at once.
  """
  path = os.path.abspath(directory)
  if path.startswith(('/proc/', '/sys/', '/dev/')) or path in ('/proc', '/sys', '/dev'):
    raise RunDirectoryError(f'{path} is under a kernel file system; {flag} must be '
                            'on a real file system.')
  existing = path
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise RunDirectoryError(f'{existing} is a file, not a directory; {flag} must be '
                            'a directory (it is created if missing).')
  if not os.access(existing, os.W_OK | os.X_OK):
    raise RunDirectoryError(f'{existing} is not writable; {flag} must be a directory '
                            'this user can write.')


def replace_directory(tmp: str, directory: str) -> None:
  """`tmp` renamed to `directory`; an existing one is moved aside first, then removed,
  so `directory` is always either the old one or the whole new one."""
  parent = os.path.dirname(os.path.abspath(directory))
  old = None
  if os.path.exists(directory):
    old = tempfile.mkdtemp(dir=parent, prefix='.old-' + os.path.basename(directory))
    os.rename(directory, os.path.join(old, 'previous'))
  os.rename(tmp, directory)
  if old is not None:
    shutil.rmtree(old, ignore_errors=True)


def incomplete_reasons(workdir: str, num_rounds: int) -> list[str]:
  """Why `workdir` is not a finished run of `num_rounds` rounds; empty when it is.

  Finished means every file of the contract is there and they agree: metrics.csv has
  rounds 1..R in order, R >= num_rounds, the last row evaluated with finite metrics;
  privacy.json covers R rounds; the checkpoint of round R exists; evaluation.json is of
  round R; with calibration, calibration.csv and figures/calibration.png exist; and
  every file has the digest evaluation.json recorded when the run finished.
  `train.py` and sweeps both decide "nothing to do" with this.
  """
  def path(*names):
    return os.path.join(workdir, *names)

  missing = [name for name in (CONFIG_FILE, METRICS_FILE, PRIVACY_FILE, EVALUATION_FILE)
             if not os.path.isfile(path(name))]
  if missing:
    return [f'missing {", ".join(missing)}']
  try:
    rows = read_metrics(path(METRICS_FILE))
    statement = read_json(path(PRIVACY_FILE))
    result = read_json(path(EVALUATION_FILE))
  except (RunDirectoryError, OSError) as e:
    return [str(e)]
  rounds = len(rows)
  reasons = []
  if rounds < num_rounds:
    reasons.append(f'{METRICS_FILE} has {rounds} of {num_rounds} rounds')
  if rows:
    last = rows[-1]
    value = last.get('eval_loss', '')
    if value == '' or not math.isfinite(float(value)):
      reasons.append(f'round {rounds} of {METRICS_FILE} has no finite evaluation')
  if statement.get('rounds') != rounds:
    reasons.append(f'{PRIVACY_FILE} covers {statement.get("rounds")} rounds, '
                   f'{METRICS_FILE} {rounds}')
  if rounds and not os.path.isfile(checkpoint_path(workdir, rounds)):
    reasons.append(f'no checkpoint of round {rounds}')
  if result.get('round') != rounds:
    reasons.append(f'{EVALUATION_FILE} is of round {result.get("round")}, not {rounds}')
  if _has_canaries(path(CONFIG_FILE)):
    try:
      audited = read_json(path(AUDIT_FILE)).get('rounds')
    except (RunDirectoryError, OSError):
      audited = None
    if audited != rounds:
      reasons.append(f'{AUDIT_FILE} is missing or not of round {rounds}')
  if 'calibration' in result:
    for name in (CALIBRATION_FILE, os.path.join(FIGURE_DIR, 'calibration.png')):
      if not os.path.isfile(path(name)):
        reasons.append(f'missing {name}')
  recorded = result.get('files')  # runs finished before the digests: not checked
  changed = _changed_files(workdir, recorded) if isinstance(recorded, dict) else []
  if changed:
    reasons.append(f'{", ".join(changed)} changed since {EVALUATION_FILE} was written '
                   "(edited, damaged or another run's)")
  return reasons


def file_digests(workdir: str, round_num: int) -> dict[str, str]:
  """SHA-256 of each file of a run finished at `round_num` that is there (paths
  relative to `workdir`): what `evaluation.json` records and `incomplete_reasons`
  checks."""
  names = (METRICS_FILE, PRIVACY_FILE, AUDIT_FILE, USERS_FILE, CALIBRATION_FILE,
           os.path.join(FIGURE_DIR, 'calibration.png'),
           os.path.relpath(checkpoint_path(workdir, round_num), workdir))
  return {name: file_digest(os.path.join(workdir, name)) for name in names
          if os.path.isfile(os.path.join(workdir, name))}


def _changed_files(workdir: str, recorded: dict) -> list[str]:
  """The files whose digest is not the one `evaluation.json` recorded."""
  changed = []
  for name, digest in sorted(recorded.items()):
    path = os.path.join(workdir, name)
    try:
      same = file_digest(path) == digest
    except OSError:
      same = False
    if not same:
      changed.append(name)
  return changed


def _has_canaries(config_path: str) -> bool:
  try:
    return bool(read_json(config_path).get('audit', {}).get('canaries'))
  except (RunDirectoryError, OSError):
    return False


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


def check_same_data(stored: dict, fingerprint: str, config_path: str, *,
                    risk: str = 'resuming would mix two datasets') -> None:
  """RunDirectoryError when the data is not what the run in `config_path` (its
  config.json, `stored`) was trained on; `risk` says what going on would do. Runs
  recorded before the fingerprint have none to compare: they are taken as they are."""
  recorded = stored.get('resolved', {}).get('data_fingerprint')
  if recorded is not None and recorded != fingerprint:
    source = stored.get('data', {}).get('source')
    raise RunDirectoryError(
        f'{config_path}: the run was trained on other data (data.source={source}: '
        f'fingerprint {recorded}, now {fingerprint}): {risk}. Restore the data the run '
        'was trained on, or use a new --workdir.')


def config_differences(
    stored: dict, new: dict, ignore: Sequence[str] = (),
    added: Optional[dict[str, Any]] = None) -> list[str]:
  """Human-readable differences between two config dicts, ignoring some keys.

  `added`: keys that configs got after some runs were recorded, with the value that
  means what those runs did (the feature off); absent from `stored` and at that value
  in `new`, they are no difference.
  """
  a, b = flatten_dict(stored), flatten_dict(new)
  added = added or {}
  diffs = []
  for key in sorted(set(a) | set(b)):
    if any(key == i or key.startswith(i + '.') for i in ignore):
      continue
    if key not in a and key in added and b.get(key) == added[key]:
      continue
    va, vb = a.get(key, '<absent>'), b.get(key, '<absent>')
    if isinstance(va, list) or isinstance(vb, list):
      va, vb = list(va) if isinstance(va, (list, tuple)) else va, list(vb) if isinstance(vb, (list, tuple)) else vb
    if va != vb:
      diffs.append(f'{key}: run has {va!r}, command has {vb!r}')
  return diffs
