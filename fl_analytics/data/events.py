"""Event logs from a file: `user_id`, `timestamp`, `event`, one row per event.

The format (README, "Real event logs"): a CSV file with a header line, or a Parquet
file, with at least the columns

* ``user_id``: any non-empty string; one user is one federated client;
* ``timestamp``: Unix seconds (an integer or a decimal number) or ISO 8601
  (``2024-01-01T08:30:00Z``; a time without a zone is UTC), rounded down to the second;
* ``event``: the event name, one of `synthetic.EVENT_VOCAB`.

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
import io
import math
import os
from typing import Iterable, Iterator, Optional, Sequence

import numpy as np

from fl_analytics import rundir
from fl_analytics.data import synthetic

REQUIRED_COLUMNS = ('user_id', 'timestamp', 'event')
UNKNOWN_EVENT_POLICIES = ('drop', 'error')
CSV_SUFFIXES = ('.csv',)
PARQUET_SUFFIXES = ('.parquet', '.pq')
_VOCAB_INDEX = {name: i for i, name in enumerate(synthetic.EVENT_VOCAB)}


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


def _utf8_lines(f, path: str) -> Iterator[str]:
  """The lines of binary file `f`, decoded one by one so that a bad byte is reported
  on its own line (a text file decodes ahead in blocks, and the csv module's line
  count then points at an earlier line)."""
  for number, raw in enumerate(f, 1):
    try:
      yield raw.decode('utf-8')
    except UnicodeDecodeError as e:
      raise EventLogError(
          f'{path}, line {number}: byte 0x{raw[e.start]:02x} at column {e.start + 1} is '
          'not UTF-8; event files are UTF-8 text.') from None


def _csv_rows(path: str) -> Iterator[tuple[str, dict]]:
  """(where, row) for every data row of a CSV file, after checking its header."""
  with open(path, 'rb') as f:
    try:
      reader = csv.DictReader(_utf8_lines(f, path))
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
        yield f'{path}, line {reader.line_num}', row
    except csv.Error as e:
      raise EventLogError(f'{path}, line {reader.line_num + 1}: {e}.') from e


def _parquet_rows(path: str) -> Iterator[tuple[str, dict]]:
  import pyarrow  # pylint: disable=g-import-not-at-top
  import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top

  try:
    schema = pq.read_schema(path)
  except (pyarrow.ArrowException, OSError) as e:
    raise EventLogError(f'{path}: not a readable Parquet file ({e}).') from e
  _check_columns(path, list(schema.names), 'the schema')
  try:
    table = pq.read_table(path, columns=list(REQUIRED_COLUMNS))
    columns = {name: table.column(name).to_pylist() for name in REQUIRED_COLUMNS}
  except (pyarrow.ArrowException, OSError) as e:  # e.g. a corrupt data page
    raise EventLogError(f'{path}: its data cannot be read ({e}); the file is damaged. '
                        'Write it again from its source.') from e
  for i in range(table.num_rows):
    yield f'{path}, row {i + 1}', {name: columns[name][i] for name in REQUIRED_COLUMNS}


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


def load_events(path: str, *, unknown_events: str = 'drop',
                time_range: Sequence = DEFAULT_TIME_RANGE) -> EventLogs:
  """Reads and validates an event file; see the module docstring for the format.

  `time_range`: (earliest, latest), Unix seconds or ISO 8601; events at or after
  `latest` or before `earliest` are refused.
  """
  earliest, latest = parse_time_range(*time_range)
  if unknown_events not in UNKNOWN_EVENT_POLICIES:
    raise ValueError(f'data.unknown_events must be one of '
                     f'{", ".join(UNKNOWN_EVENT_POLICIES)}. Found {unknown_events!r}.')
  if not os.path.isfile(path):
    raise EventLogError(f'{path}: no such file (data.source=events:PATH).')
  rows = _csv_rows(path) if _file_format(path) == 'csv' else _parquet_rows(path)
  per_user: dict[str, tuple[list[int], list[int]]] = {}
  unknown: dict[str, int] = {}
  num_rows = 0
  for where, row in rows:
    num_rows += 1
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
    index = _VOCAB_INDEX.get(event)
    if index is None:
      if unknown_events == 'error' or not event:
        raise EventLogError(
            f'{where}: ' + (f'event {event!r} is not in the vocabulary'
                            if event else 'empty event') +
            f' ({", ".join(synthetic.EVENT_VOCAB)}).' +
            (' With data.unknown_events=drop such rows are dropped.' if event else ''))
      unknown[event] = unknown.get(event, 0) + 1
      continue
    times, kinds = per_user.setdefault(user, ([], []))
    times.append(timestamp)
    kinds.append(index)
  if not num_rows:
    raise EventLogError(f'{path} has a header but no events.')
  logs, duplicates = [], 0
  for user in sorted(per_user):
    times, kinds = per_user[user]
    duplicates += len(times) - len(set(zip(times, kinds)))
    order = np.argsort(np.asarray(times, np.int64), kind='stable')
    logs.append(synthetic.UserLog(user, np.asarray(times, np.int64)[order],
                                  np.asarray(kinds, np.int32)[order]))
  warnings = []
  if duplicates:
    warnings.append(
        f'{path}: {duplicates} rows repeat another row of the same user, timestamp and '
        'event exactly; they are kept (a repeated event counts twice). Deduplicate the '
        'file if they are export artefacts.')
  with_nul = [u for u in per_user if '\x00' in u]
  if with_nul:
    warnings.append(
        f'{path}: {len(with_nul)} user ids contain NUL bytes (e.g. {with_nul[0]!r}); '
        'they are kept as distinct users, which is rarely what the source meant.')
  if not logs:
    raise EventLogError(
        f'{path}: none of its {num_rows} events is in the vocabulary '
        f'({", ".join(synthetic.EVENT_VOCAB)}); unknown: '
        f'{", ".join(sorted(unknown)[:10])}.')
  return EventLogs(logs, num_rows, unknown, tuple(warnings))


def _iso(timestamp: int) -> str:
  return datetime.datetime.fromtimestamp(
      int(timestamp), datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def _event_rows(logs: Iterable[synthetic.UserLog]) -> Iterator[tuple[str, str, str, str]]:
  for log in logs:
    for t, e in zip(log.timestamps, log.events):
      yield log.user_id, _iso(t), synthetic.EVENT_VOCAB[int(e)], log.archetype


def write_events(logs: Sequence[synthetic.UserLog], path: str) -> int:
  """Writes `logs` as an event file (CSV or Parquet by suffix), atomically.

  Columns: user_id, timestamp (ISO 8601, UTC), event, and archetype (the synthetic
  user's archetype; ignored by `load_events`). Returns the number of events written.
  """
  fmt = _file_format(path)
  rows = list(_event_rows(logs))
  header = REQUIRED_COLUMNS + ('archetype',)
  if fmt == 'csv':
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator='\n')
    writer.writerow(header)
    writer.writerows(rows)
    data = buf.getvalue().encode('utf-8')
  else:
    import pyarrow  # pylint: disable=g-import-not-at-top
    import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top

    table = pyarrow.table({name: [r[i] for r in rows] for i, name in enumerate(header)},
                          schema=pyarrow.schema([(n, pyarrow.string()) for n in header]))
    sink = pyarrow.BufferOutputStream()
    pq.write_table(table, sink)
    data = sink.getvalue().to_pybytes()
  rundir.atomic_write_bytes(path, data)
  return len(rows)


def source_path(source: str) -> Optional[str]:
  """The PATH of `data.source=events:PATH`; None for the synthetic generator."""
  if source == 'synthetic':
    return None
  if source.startswith('events:') and source[len('events:'):].strip():
    return source[len('events:'):].strip()
  raise ValueError(f"data.source must be 'synthetic' or 'events:PATH' (a CSV or Parquet "
                   f'file). Found {source!r}.')
