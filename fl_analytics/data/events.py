"""Event logs from a file: `user_id`, `timestamp`, `event`, one row per event.

The format (docs/data.md): a CSV file with a header line, or a Parquet
file, with at least the columns

* ``user_id``: any non-empty string; one user is one federated client;
* ``timestamp``: Unix seconds (an integer or a decimal number) or ISO 8601
  (``2024-01-01T08:30:00Z``; a time without a zone is UTC), rounded down to the second;
* ``event``: the event name, one of the vocabulary of `data.generator`
  (`generators.vocabulary`; `synthetic.EVENT_VOCAB` unless another is given).

Other columns are allowed and ignored; rows may come in any order (each user's events
are sorted by time, stable for equal times). Timestamps outside `time_range`
(`data.min_time`, `data.max_time`; by default 1970 to 2100) are refused with their
row: one stray event decades away would stretch the featurized span and move every
label. Exact duplicate rows and user ids containing NUL bytes are kept and reported in
`EventLogs.warnings`. Event names outside the vocabulary are
dropped and counted (`unknown_events='drop'`, the default: the features only know the
vocabulary, and an unknown event is not taken as activity) or refused with the first
row that has one (`unknown_events='error'`).

`load_events` reads and validates the whole file before returning anything, and raises
`EventLogError` naming the file, the line (CSV, counting the header as line 1; the
physical line, also for bytes that are not UTF-8) or row (Parquet, from 1) and the
problem. `write_events` writes logs in the same format (the
exporter of the synthetic population), atomically.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import hashlib
import math
import os
import tempfile
from typing import Callable, Iterable, Iterator, Optional, Sequence

import numpy as np

from fl_analytics.core import rundir
from fl_analytics.data import synthetic

REQUIRED_COLUMNS = ('user_id', 'timestamp', 'event')
UNKNOWN_EVENT_POLICIES = ('drop', 'error')
CSV_SUFFIXES = ('.csv',)
PARQUET_SUFFIXES = ('.parquet', '.pq')
def _vocabulary(vocabulary: Optional[Sequence[str]]) -> tuple[str, ...]:
  """The vocabulary given, or the default generator's (`synthetic.EVENT_VOCAB`)."""
  return tuple(synthetic.EVENT_VOCAB if vocabulary is None else vocabulary)


def _listed(vocabulary: Sequence[str]) -> str:
  names = ', '.join(vocabulary[:12])
  return names + (f', ... ({len(vocabulary)} names)' if len(vocabulary) > 12 else '')


class EventLogError(ValueError):
  """An event file that cannot be used, with the file, the line and the problem."""


@dataclasses.dataclass(frozen=True)
class EventLogs:
  """The users of an event file, and what loading it dropped."""

  logs: list[synthetic.UserLog]  # sorted by user_id
  num_rows: int
  unknown_events: dict[str, int]  # dropped event names -> rows
  warnings: tuple[str, ...] = ()  # kept, but worth a look (duplicates, NUL bytes)

  @property
  def origin_timestamp(self) -> int:
    """Midnight (UTC) of the day of the earliest event: day 0 of the featurization."""
    first = min(int(log.timestamps[0]) for log in self.logs if len(log.timestamps))
    return first - first % synthetic.SECONDS_PER_DAY

  @property
  def num_days(self) -> int:
    """Days from the origin through the day of the latest event."""
    last = max(int(log.timestamps[-1]) for log in self.logs if len(log.timestamps))
    return (last - self.origin_timestamp) // synthetic.SECONDS_PER_DAY + 1


def _file_format(path: str) -> str:
  lower = path.lower()
  if lower.endswith(CSV_SUFFIXES):
    return 'csv'
  if lower.endswith(PARQUET_SUFFIXES):
    return 'parquet'
  raise EventLogError(
      f'{path}: unknown file type; event files end in '
      f'{", ".join(CSV_SUFFIXES + PARQUET_SUFFIXES)}.')


def parse_timestamp(text) -> int:
  """Unix seconds from Unix seconds or ISO 8601 text; ValueError if it is neither."""
  if isinstance(text, (int, np.integer)):
    return int(text)
  if isinstance(text, (float, np.floating)):
    if not math.isfinite(text):
      raise ValueError(text)
    return math.floor(text)
  if isinstance(text, datetime.datetime):
    when = text if text.tzinfo else text.replace(tzinfo=datetime.timezone.utc)
    return math.floor(when.timestamp())
  text = str(text).strip()
  try:
    value = float(text)
  except ValueError:
    pass
  else:
    if not math.isfinite(value):
      raise ValueError(text)
    return math.floor(value)
  iso = text[:-1] + '+00:00' if text.endswith(('Z', 'z')) else text
  when = datetime.datetime.fromisoformat(iso)  # ValueError when it is not ISO 8601
  if when.tzinfo is None:
    when = when.replace(tzinfo=datetime.timezone.utc)
  return math.floor(when.timestamp())


class _Position:
  """How far a reader is through its file (for progress lines), and the SHA-256 of
  the bytes it read (`digest`; set when the whole file was read)."""

  def __init__(self):
    self.done, self.total = 0, 0
    self.digest: Optional[str] = None

  @property
  def fraction(self) -> Optional[float]:
    return self.done / self.total if self.total else None


def _utf8_lines(f, path: str, position: _Position) -> Iterator[str]:
  """The lines of binary file `f`, decoded one by one so that a bad byte is reported
  on its own line (a text file decodes ahead in blocks, and the csv module's line
  count then points at an earlier line)."""
  h = hashlib.sha256()
  for number, raw in enumerate(f, 1):
    position.done += len(raw)
    h.update(raw)
    try:  # a spreadsheet's UTF-8 byte-order mark before the header is not a column name
      yield raw.decode('utf-8-sig' if number == 1 else 'utf-8')
    except UnicodeDecodeError as e:
      raise EventLogError(
          f'{path}, line {number}: byte 0x{raw[e.start]:02x} at column {e.start + 1} is '
          'not UTF-8; event files are UTF-8 text.') from None
  position.digest = h.hexdigest()  # every byte was read, in this same pass


def _csv_rows(path: str, position: _Position) -> Iterator[tuple[str, dict]]:
  """(where, row) for every data row of a CSV file, after checking its header."""
  position.total = os.path.getsize(path)
  with open(path, 'rb') as f:
    try:
      reader = csv.DictReader(_utf8_lines(f, path, position))
      header = reader.fieldnames
    except csv.Error as e:
      raise EventLogError(f'{path}, line 1: cannot read the header ({e}).') from e
    if not header:
      raise EventLogError(
          f'{path} is empty: expected a header line with the columns '
          f'{", ".join(REQUIRED_COLUMNS)}, then one line per event.')
    _check_columns(path, [h.strip() for h in header], 'the header (line 1)')
    reader.fieldnames = [h.strip() for h in header]
    try:
      for row in reader:
        if None in row:  # csv.DictReader's key for cells beyond the header's columns
          raise EventLogError(
              f'{path}, line {reader.line_num}: {len(row[None])} more cell(s) than the '
              f'{len(header)} columns of the header; a value with a comma must be quoted.')
        yield f'{path}, line {reader.line_num}', row
    except csv.Error as e:
      raise EventLogError(f'{path}, line {reader.line_num + 1}: {e}.') from e


def _parquet_rows(path: str, position: _Position) -> Iterator[tuple[str, dict]]:
  """(where, row) for every row of a Parquet file, one record batch in memory at a time."""
  import pyarrow  # pylint: disable=g-import-not-at-top
  import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top

  try:
    file = pq.ParquetFile(path)
  except (pyarrow.ArrowException, OSError) as e:
    raise EventLogError(f'{path}: not a readable Parquet file ({e}).') from e
  _check_columns(path, list(file.schema_arrow.names), 'the schema')
  position.total = file.metadata.num_rows
  # Parquet is read by column chunks, not front to back: its bytes are hashed first.
  position.digest = rundir.file_digest(path)
  row = 0
  try:
    for batch in file.iter_batches(batch_size=CHUNK_ROWS, columns=list(REQUIRED_COLUMNS)):
      columns = [batch.column(name).to_pylist() for name in REQUIRED_COLUMNS]
      for values in zip(*columns):
        row += 1
        position.done = row
        yield f'{path}, row {row}', dict(zip(REQUIRED_COLUMNS, values))
  except (pyarrow.ArrowException, OSError) as e:  # e.g. a corrupt data page
    raise EventLogError(f'{path}: its data cannot be read ({e}); the file is damaged. '
                        'Write it again from its source.') from e


def _check_columns(path: str, names: Sequence[str], where: str) -> None:
  missing = [c for c in REQUIRED_COLUMNS if c not in names]
  if missing:
    raise EventLogError(
        f'{path}: {where} lacks the column(s) {", ".join(missing)}; found '
        f'{", ".join(repr(n) for n in names)}. Required: {", ".join(REQUIRED_COLUMNS)} '
        '(other columns are ignored).')


# The default plausible window of event times: from the Unix epoch to 2100 (exclusive).
DEFAULT_TIME_RANGE = ('1970-01-01T00:00:00Z', '2100-01-01T00:00:00Z')


def parse_time_range(min_time, max_time) -> tuple[int, int]:
  """`data.min_time`, `data.max_time` (Unix seconds or ISO 8601) as Unix seconds."""
  bounds = []
  for key, value in (('data.min_time', min_time), ('data.max_time', max_time)):
    try:
      bounds.append(parse_timestamp(value))
    except (ValueError, OverflowError, OSError):
      raise ValueError(f'{key} must be Unix seconds or ISO 8601 (e.g. '
                       f'2024-01-01T00:00:00Z). Found {value!r}.') from None
  if not bounds[0] < bounds[1]:
    raise ValueError(f'data.min_time ({min_time}) must be before data.max_time '
                     f'({max_time}).')
  return bounds[0], bounds[1]


# Rows validated between two calls of a scan's `on_chunk`: bounds the memory of a scan.
CHUNK_ROWS = 1 << 20


@dataclasses.dataclass(frozen=True)
class Scan:
  """What a validating pass over an event file found, besides the events themselves."""

  user_ids: list[str]  # in order of first appearance; chunks index into it
  num_rows: int
  unknown_events: dict[str, int]  # dropped event names -> rows
  sha256: str  # of the file's bytes, as they were read

  def nul_warning(self, path: str) -> Optional[str]:
    with_nul = [u for u in self.user_ids if '\x00' in u]
    if not with_nul:
      return None
    return (f'{path}: {len(with_nul)} user ids contain NUL bytes (e.g. {with_nul[0]!r}); '
            'they are kept as distinct users, which is rarely what the source meant.')


def _parse_row(where: str, row: dict, earliest: int, latest: int, index: dict):
  """(user id, Unix seconds, event name, vocabulary index or None) of one row; an
  EventLogError naming `where` for an empty user id or a bad or implausible time."""
  user = row.get('user_id')
  user = '' if user is None else str(user).strip()
  if not user:
    raise EventLogError(f'{where}: empty user_id.')
  raw = row.get('timestamp')
  try:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
      raise ValueError(raw)
    timestamp = parse_timestamp(raw)
  except (ValueError, OverflowError, OSError) as e:
    raise EventLogError(
        f'{where}: unparseable timestamp {raw!r}; expected Unix seconds (e.g. '
        '1704097800) or ISO 8601 (e.g. 2024-01-01T08:30:00Z).') from e
  if not earliest <= timestamp < latest:
    raise EventLogError(
        f'{where}: timestamp {raw!r} is outside the plausible window {_iso(earliest)} '
        f'to {_iso(latest)} (data.min_time, data.max_time): one such event would '
        'stretch the span of every user\'s features. Fix the row, or widen the '
        'window if the time is real.')
  event = '' if row.get('event') is None else str(row['event']).strip()
  return user, timestamp, event, index.get(event)


def scan_events(path: str, *, on_chunk: Callable[[np.ndarray, np.ndarray, np.ndarray], None],
                unknown_events: str = 'drop', time_range: Sequence = DEFAULT_TIME_RANGE,
                progress: Optional[Callable[[int, Optional[float]], None]] = None,
                vocabulary: Optional[Sequence[str]] = None) -> Scan:
  """Reads and validates an event file in one streaming pass (module docstring).

  Every `CHUNK_ROWS` kept rows, and at the end, calls `on_chunk(users, timestamps,
  events)` with int64 indices into the returned `Scan.user_ids`, int64 Unix seconds
  and int8 indices into `vocabulary` (`_vocabulary`), in file order. `progress(rows read, fraction of the
  file or None)` is called every `CHUNK_ROWS` rows. Memory: one chunk, and the user ids.
  """
  earliest, latest = parse_time_range(*time_range)
  if unknown_events not in UNKNOWN_EVENT_POLICIES:
    raise ValueError(f'data.unknown_events must be one of '
                     f'{", ".join(UNKNOWN_EVENT_POLICIES)}. Found {unknown_events!r}.')
  if not os.path.isfile(path):
    raise EventLogError(f'{path}: no such file (data.source=events:PATH).')
  vocabulary = _vocabulary(vocabulary)
  kind_of = {name: i for i, name in enumerate(vocabulary)}
  position = _Position()
  rows = (_csv_rows(path, position) if _file_format(path) == 'csv'
          else _parquet_rows(path, position))
  index: dict[str, int] = {}
  unknown: dict[str, int] = {}
  users, times, kinds = [], [], []
  num_rows = 0

  def flush():
    if users:
      on_chunk(np.asarray(users, np.int64), np.asarray(times, np.int64),
               np.asarray(kinds, np.int8))
      users.clear(), times.clear(), kinds.clear()

  for where, row in rows:
    num_rows += 1
    if progress is not None and num_rows % CHUNK_ROWS == 0:
      progress(num_rows, position.fraction)
    user, timestamp, event, kind = _parse_row(where, row, earliest, latest, kind_of)
    if kind is None:
      _check_unknown(where, event, unknown_events, vocabulary)
      unknown[event] = unknown.get(event, 0) + 1
      continue
    users.append(index.setdefault(user, len(index)))
    times.append(timestamp)
    kinds.append(kind)
    if len(users) == CHUNK_ROWS:
      flush()
  flush()
  if not num_rows:
    raise EventLogError(f'{path} has a header but no events.')
  if not index:
    raise EventLogError(
        f'{path}: none of its {num_rows} events is in the vocabulary '
        f'({_listed(vocabulary)}); unknown: '
        f'{", ".join(sorted(unknown)[:10])}.')
  return Scan(list(index), num_rows, unknown, position.digest)


def _check_unknown(where: str, event: str, unknown_events: str, vocabulary) -> None:
  """EventLogError for an empty event, or an unknown one with unknown_events=error."""
  if unknown_events == 'error' or not event:
    raise EventLogError(
        f'{where}: ' + (f'event {event!r} is not in the vocabulary'
                        if event else 'empty event') +
        f' ({_listed(vocabulary)}).' +
        (' With data.unknown_events=drop such rows are dropped.' if event else ''))


def duplicate_rows(users: np.ndarray, times: np.ndarray, kinds: np.ndarray) -> int:
  """Rows that repeat another row's (user, timestamp, event) exactly."""
  if len(users) < 2:
    return 0
  order = np.lexsort((kinds, times, users))
  same = ((np.diff(users[order]) == 0) & (np.diff(times[order]) == 0)
          & (np.diff(kinds[order]) == 0))
  return int(same.sum())


def duplicates_warning(path: str, duplicates: int) -> Optional[str]:
  if not duplicates:
    return None
  return (f'{path}: {duplicates} rows repeat another row of the same user, timestamp and '
          'event exactly; they are kept (a repeated event counts twice). Deduplicate the '
          'file if they are export artefacts.')


def sorted_user_order(user_ids: Sequence[str]) -> np.ndarray:
  """rank[i]: the position of user i among the users sorted by id (the order of
  `EventLogs.logs` and of an event store)."""
  order = sorted(range(len(user_ids)), key=user_ids.__getitem__)
  rank = np.empty(len(user_ids), np.int64)
  rank[order] = np.arange(len(user_ids))
  return rank


def load_events(path: str, *, unknown_events: str = 'drop',
                time_range: Sequence = DEFAULT_TIME_RANGE,
                vocabulary: Optional[Sequence[str]] = None) -> EventLogs:
  """Reads and validates an event file into memory; see the module docstring for the
  format (`fl_analytics.data.event_store` reads a large one into a store on disk).

  `time_range`: (earliest, latest), Unix seconds or ISO 8601; events at or after
  `latest` or before `earliest` are refused. `vocabulary`: the names events index
  into (`_vocabulary`).
  """
  chunks = []
  scan = scan_events(path, on_chunk=lambda *c: chunks.append(c),
                     unknown_events=unknown_events, time_range=time_range,
                     vocabulary=vocabulary)
  users, times, kinds = (np.concatenate(parts) for parts in zip(*chunks))
  users = sorted_user_order(scan.user_ids)[users]
  # By user (sorted by id), then by time; lexsort is stable: equal times keep file order.
  order = np.lexsort((times, users))
  users, times, kinds = users[order], times[order], kinds[order].astype(np.int32)
  bounds = np.searchsorted(users, np.arange(len(scan.user_ids) + 1))
  names = sorted(scan.user_ids)
  logs = [synthetic.UserLog(names[u], times[a:b], kinds[a:b])
          for u, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))]
  warnings = [w for w in (duplicates_warning(path, duplicate_rows(users, times, kinds)),
                          scan.nul_warning(path)) if w]
  return EventLogs(logs, scan.num_rows, scan.unknown_events, tuple(warnings))


def _iso(timestamp: int) -> str:
  return datetime.datetime.fromtimestamp(
      int(timestamp), datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def _event_rows(log: synthetic.UserLog, vocabulary) -> list[tuple[str, str, str, str]]:
  return [(log.user_id, _iso(t), vocabulary[int(e)], log.archetype)
          for t, e in zip(log.timestamps, log.events)]


def write_events(logs: Iterable[synthetic.UserLog], path: str,
                 vocabulary: Optional[Sequence[str]] = None) -> int:
  """Writes `logs` (events indexing into `vocabulary`, `_vocabulary`) as an event
  file (CSV or Parquet by suffix), atomically.

  Columns: user_id, timestamp (ISO 8601, UTC), event, and archetype (the synthetic
  user's archetype; ignored by `load_events`). Streams: `logs` may be a generator, and
  memory holds one batch of users' rows. Returns the number of events written.
  """
  fmt = _file_format(path)
  vocabulary = _vocabulary(vocabulary)
  header = REQUIRED_COLUMNS + ('archetype',)
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix='.tmp-', suffix=os.path.basename(path))
  os.close(fd)
  written = 0
  try:
    if fmt == 'csv':
      with open(tmp, 'w', encoding='utf-8', newline='') as f:
        writer = csv.writer(f, lineterminator='\n')
        writer.writerow(header)
        for log in logs:
          rows = _event_rows(log, vocabulary)
          writer.writerows(rows)
          written += len(rows)
    else:
      import pyarrow  # pylint: disable=g-import-not-at-top
      import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top

      schema = pyarrow.schema([(n, pyarrow.string()) for n in header])
      with pq.ParquetWriter(tmp, schema) as writer:
        batch: list = []
        for log in logs:
          batch += _event_rows(log, vocabulary)
          if len(batch) >= CHUNK_ROWS:
            writer.write_table(pyarrow.table(
                {n: [r[i] for r in batch] for i, n in enumerate(header)}, schema=schema))
            written += len(batch)
            batch = []
        writer.write_table(pyarrow.table(
            {n: [r[i] for r in batch] for i, n in enumerate(header)}, schema=schema))
        written += len(batch)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise
  return written


def source_path(source: str) -> Optional[str]:
  """The PATH of `data.source=events:PATH`; None for the synthetic generator."""
  if source == 'synthetic':
    return None
  if source.startswith('events:') and source[len('events:'):].strip():
    return source[len('events:'):].strip()
  raise ValueError(f"data.source must be 'synthetic' or 'events:PATH' (a CSV or Parquet "
                   f'file). Found {source!r}.')
