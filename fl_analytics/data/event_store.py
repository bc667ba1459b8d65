"""A per-user store of an event file on disk, read once, then sampled like the generator.

`open_store(path, ...)` returns the store of event file `path` (CSV or Parquet,
`fl_analytics.data.events`), building it first when there is none, when the file
changed since, or when it was built with other `data.unknown_events` or
`data.min_time`/`data.max_time`. The build is one streaming pass over the file
(`events.scan_events`, the same validation and errors as `events.load_events`, with a
progress line), in bounded memory: chunks of rows go to temporary files, are then
placed into per-user order (a counting sort by user), and each user's events are sorted
by time (stable: equal times keep file order). Memory holds one chunk of rows and the
user ids; the events themselves never are all in memory.

The store is a directory `PATH.store/` beside the file:

=====================  ================================================================
``timestamps.npy``     int64 Unix seconds of every kept event, user by user, in time order
``events.npy``         int8 vocabulary index of each
``offsets.npy``        int64 [users + 1]: user u's events are rows offsets[u]:offsets[u+1]
``user_ids.arrow``     the user ids, sorted (Arrow IPC file; user u is the u-th)
``meta.json``          the file it came from (size, SHA-256 of its bytes), the settings
                       it was built with, rows, users, dropped events, warnings
=====================  ================================================================

The arrays are memory-mapped when read, so opening a store costs nothing per event,
and `log(u)` reads one user's rows. Users are in the order of `events.load_events`
(sorted by id), so a run from the store and a run from the file in memory are the
same. The store is current when the file's bytes have the SHA-256 the build read
(`fingerprint`, computed in the build's own pass for CSV): an edit that keeps the size
and the modification time is seen too. Each open reads the file once to hash it
(about as long as `sha256sum` takes). A store whose arrays are missing, truncated or
do not agree with each other is built again. A store being built is written to a
temporary directory and renamed into place, under a lock (`PATH.store.lock`) that other processes wait on, so a crash never
leaves a half-built store and parallel sweep points build it once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
import time
from typing import Callable, Iterator, Optional, Sequence

from absl import logging
import numpy as np

from fl_analytics.core import rundir
from fl_analytics.data import events
from fl_analytics.data import synthetic

STORE_SUFFIX = '.store'
FORMAT_VERSION = 1
_ARRAYS = ('timestamps.npy', 'events.npy', 'offsets.npy')
_IDS_FILE = 'user_ids.arrow'
_META_FILE = 'meta.json'
# Users per block when sorting each user's events by time (bounded memory).
_SORT_BLOCK_EVENTS = 1 << 22


def store_path(path: str) -> str:
  return path + STORE_SUFFIX


class EventStore:
  """The users of an event file, memory-mapped from its store directory."""

  def __init__(self, directory: str):
    import pyarrow.feather as feather  # pylint: disable=g-import-not-at-top

    self.directory = directory
    self.meta = rundir.read_json(os.path.join(directory, _META_FILE))
    self._timestamps, self._events, self._offsets = (
        np.load(os.path.join(directory, name), mmap_mode='r') for name in _ARRAYS)
    self._ids = feather.read_table(os.path.join(directory, _IDS_FILE),
                                   memory_map=True).column('user_id')
    sizes = (len(self._timestamps), len(self._events), int(self._offsets[-1]),
             self.meta['num_events'])
    users = (len(self._offsets) - 1, len(self._ids), self.meta['num_users'])
    if len(set(sizes)) != 1 or len(set(users)) != 1:
      raise ValueError(f'the arrays of {directory} do not agree (events {sizes}, '
                       f'users {users})')

  @property
  def fingerprint(self) -> str:
    """The event file's identity: the SHA-256 of the bytes the store was built from."""
    return 'sha256:' + self.meta['source']['sha256']

  @property
  def num_users(self) -> int:
    return len(self._offsets) - 1

  @property
  def num_events(self) -> int:
    return len(self._timestamps)

  def user_id(self, u: int) -> str:
    return self._ids[u].as_py()

  def log(self, u: int) -> synthetic.UserLog:
    """User u's log (users sorted by id), read from the memory-mapped arrays."""
    return self.logs([u]).log(0)

  def logs(self, users) -> synthetic.LogBatch:
    """Users' logs, read together from the memory-mapped arrays."""
    users = np.asarray(users, np.int64).reshape(-1)
    start = np.asarray(self._offsets[users], np.int64)
    sizes = np.asarray(self._offsets[users + 1], np.int64) - start
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    rows = np.repeat(start - offsets[:-1], sizes) + np.arange(offsets[-1])
    return synthetic.LogBatch(tuple(self._ids.take(users).to_pylist()),
                              np.asarray(self._timestamps[rows], np.int64),
                              np.asarray(self._events[rows], np.int32), offsets)

  @property
  def origin_timestamp(self) -> int:
    return int(self.meta['origin_timestamp'])

  @property
  def num_days(self) -> int:
    return int(self.meta['num_days'])


def _settings(unknown_events: str, time_range: Sequence,
              vocabulary: Optional[Sequence[str]]) -> dict:
  earliest, latest = events.parse_time_range(*time_range)
  settings = {'unknown_events': unknown_events, 'min_time': earliest, 'max_time': latest}
  if vocabulary is not None and tuple(vocabulary) != synthetic.EVENT_VOCAB:
    settings['vocabulary'] = list(vocabulary)  # stores of the default vocabulary: none
  return settings


def _current(directory: str, path: str, settings: dict) -> bool:
  """Whether the store in `directory` was built from `path`'s bytes as they are now
  (their SHA-256; a size that differs answers without reading), with `settings`."""
  meta_path = os.path.join(directory, _META_FILE)
  if not os.path.exists(meta_path):
    return False
  try:
    meta = rundir.read_json(meta_path)
    source = meta['source']
  except (OSError, ValueError, KeyError, rundir.RunDirectoryError):
    return False
  if meta.get('format_version') != FORMAT_VERSION or meta.get('settings') != settings:
    return False
  if not all(os.path.isfile(os.path.join(directory, name))
             for name in (*_ARRAYS, _IDS_FILE)):
    return False
  return (os.path.getsize(path) == source.get('size')
          and rundir.file_digest(path) == source.get('sha256'))


@contextlib.contextmanager
def _build_lock(directory: str) -> Iterator[None]:
  """An exclusive lock beside the store; other builders wait for it."""
  lock_path = directory + '.lock'
  try:
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
  except OSError as e:
    raise events.EventLogError(
        f'Cannot build the event store {directory}: {e}. The store is written beside the '
        'event file; copy the file to a writable directory.') from e
  try:
    fcntl.flock(fd, fcntl.LOCK_EX)
    yield
  finally:
    os.close(fd)


def open_store(path: str, *, unknown_events: str = 'drop',
               time_range: Sequence = events.DEFAULT_TIME_RANGE,
               progress: Optional[Callable[[str], None]] = None,
               vocabulary: Optional[Sequence[str]] = None) -> EventStore:
  """The store of event file `path` read against `vocabulary` (default: the default
  generator's), built first if it is missing or stale."""
  if not os.path.isfile(path):
    raise events.EventLogError(f'{path}: no such file (data.source=events:PATH).')
  settings = _settings(unknown_events, time_range, vocabulary)
  directory = store_path(path)
  store = _current(directory, path, settings) and _open(directory)
  if not store:
    with _build_lock(directory):
      # another process may have built it meanwhile
      store = _current(directory, path, settings) and _open(directory)
      if not store:
        build_store(path, directory, settings=settings, progress=progress)
        store = EventStore(directory)
  return store


def _open(directory: str) -> Optional[EventStore]:
  """The store in `directory`, or None (with a warning) when it is damaged."""
  try:
    return EventStore(directory)
  except (OSError, ValueError, KeyError, EOFError, rundir.RunDirectoryError) as e:
    logging.warning('The event store %s is damaged (%s); building it again.', directory, e)
    return None


def build_store(path: str, directory: str, *, settings: dict,
                progress: Optional[Callable[[str], None]] = None) -> None:
  """Builds the store of `path` into `directory` (replacing any), atomically: three
  passes in a temporary directory, renamed into place."""
  say = progress or (lambda line: logging.info('%s', line))
  t0 = time.monotonic()
  size = os.path.getsize(path)
  parent = os.path.dirname(os.path.abspath(directory))
  tmp = tempfile.mkdtemp(dir=parent, prefix='.tmp-' + os.path.basename(directory))
  try:
    scan, chunk_files, counts = _scan_to_chunks(path, tmp, settings, say, t0)
    rank = events.sorted_user_order(scan.user_ids)
    num_users = len(scan.user_ids)
    sorted_counts = np.zeros(num_users, np.int64)
    sorted_counts[rank] = counts[:num_users]
    offsets = np.concatenate([[0], np.cumsum(sorted_counts)])
    open_array = np.lib.format.open_memmap
    timestamps = open_array(os.path.join(tmp, _ARRAYS[0]), 'w+', np.int64, (offsets[-1],))
    kinds = open_array(os.path.join(tmp, _ARRAYS[1]), 'w+', np.int8, (offsets[-1],))
    _place_chunks(chunk_files, rank, offsets, timestamps, kinds)
    duplicates = _sort_users(offsets, sorted_counts, timestamps, kinds)
    timestamps.flush(), kinds.flush()
    np.save(os.path.join(tmp, _ARRAYS[2]), offsets)
    _write_user_ids(scan.user_ids, os.path.join(tmp, _IDS_FILE))
    first_time, last_time = int(timestamps.min()), int(timestamps.max())
    del timestamps, kinds
    origin = first_time - first_time % synthetic.SECONDS_PER_DAY
    meta = {
        'format_version': FORMAT_VERSION,
        'source': {'path': os.path.abspath(path), 'size': size, 'sha256': scan.sha256},
        'settings': settings,
        'num_rows': scan.num_rows, 'num_users': num_users, 'num_events': int(offsets[-1]),
        'unknown_events': scan.unknown_events,
        'warnings': [w for w in (events.duplicates_warning(path, duplicates),
                                 scan.nul_warning(path)) if w],
        'origin_timestamp': origin,
        'num_days': (last_time - origin) // synthetic.SECONDS_PER_DAY + 1,
        'build_seconds': time.monotonic() - t0,
    }
    with open(os.path.join(tmp, _META_FILE), 'w') as f:
      json.dump(meta, f, indent=2, sort_keys=True)
    rundir.replace_directory(tmp, directory)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  say(f'{path}: {scan.num_rows:,} rows, {num_users:,} users stored in {directory} '
      f'({meta["build_seconds"]:.1f} s)')


def _scan_to_chunks(path, tmp, settings, say, t0):
  """Pass 1: validate and stream the rows into chunk files, counting events per user.
  Returns (the scan, the chunk files, events per user in first-seen order)."""
  chunk_files: list[str] = []
  counts = np.zeros(0, np.int64)

  def on_chunk(users, times, kinds):
    nonlocal counts
    name = os.path.join(tmp, f'chunk-{len(chunk_files):05d}.npz')
    np.savez(name, users=users, times=times, kinds=kinds)
    chunk_files.append(name)
    per_user = np.bincount(users)
    if len(per_user) > len(counts):
      counts = np.concatenate([counts, np.zeros(len(per_user) - len(counts), np.int64)])
    counts[:len(per_user)] += per_user

  def on_progress(rows, fraction):
    say(f'{path}: {rows:,} rows read'
        + (f' ({100 * fraction:.0f}%)' if fraction is not None else '')
        + f', {time.monotonic() - t0:.0f} s')

  scan = events.scan_events(path, on_chunk=on_chunk,
                            unknown_events=settings['unknown_events'],
                            time_range=(settings['min_time'], settings['max_time']),
                            progress=on_progress, vocabulary=settings.get('vocabulary'))
  return scan, chunk_files, counts


def _place_chunks(chunk_files, rank, offsets, timestamps, kinds_out) -> None:
  """Pass 2: each chunk's rows to their user's next free rows (file order kept)."""
  cursor = offsets[:-1].copy()
  for name in chunk_files:
    with np.load(name) as chunk:
      users = rank[chunk['users']]
      order = np.argsort(users, kind='stable')
      users = users[order]
      first = np.flatnonzero(np.concatenate([[True], users[1:] != users[:-1]]))
      group_sizes = np.diff(np.concatenate([first, [len(users)]]))
      within = np.arange(len(users)) - np.repeat(first, group_sizes)
      rows = cursor[users] + within
      timestamps[rows] = chunk['times'][order]
      kinds_out[rows] = chunk['kinds'][order]
      cursor[users[first]] += group_sizes
    os.unlink(name)


def _sort_users(offsets, sorted_counts, timestamps, kinds_out) -> int:
  """Pass 3: each user's events by time (stable), a block of users at a time; returns
  how many rows exactly duplicate another."""
  num_users = len(sorted_counts)
  duplicates, start_user = 0, 0
  while start_user < num_users:
    end_user = int(np.searchsorted(offsets, offsets[start_user] + _SORT_BLOCK_EVENTS,
                                   side='right')) - 1
    end_user = min(max(end_user, start_user + 1), num_users)
    a, b = int(offsets[start_user]), int(offsets[end_user])
    owner = np.repeat(np.arange(start_user, end_user), sorted_counts[start_user:end_user])
    times, kinds = np.array(timestamps[a:b]), np.array(kinds_out[a:b])
    order = np.lexsort((times, owner))
    timestamps[a:b], kinds_out[a:b] = times[order], kinds[order]
    duplicates += events.duplicate_rows(owner, times, kinds)
    start_user = end_user
  return duplicates


def _write_user_ids(user_ids, path: str) -> None:
  import pyarrow  # pylint: disable=g-import-not-at-top
  import pyarrow.feather as feather  # pylint: disable=g-import-not-at-top

  feather.write_feather(
      pyarrow.table({'user_id': pyarrow.array(sorted(user_ids), pyarrow.string())}),
      path, compression='uncompressed')
