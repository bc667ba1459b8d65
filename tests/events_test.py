"""Event files: the round trip of the exporter, any row order, and clear errors."""

import os
import subprocess
import sys

import numpy as np
import pytest

from fl_analytics.data import events
from fl_analytics.data import synthetic

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def population():
  return synthetic.generate_population(num_users=30, seed=3, num_days=20)


@pytest.mark.parametrize('suffix', ['.csv', '.parquet'])
def test_exported_population_reads_back_exactly(tmp_path, population, suffix):
  path = str(tmp_path / f'events{suffix}')
  count = events.write_events(population, path)
  assert count == sum(len(log.events) for log in population)
  loaded = events.load_events(path)
  with_events = [log for log in population if len(log.events)]
  assert [log.user_id for log in loaded.logs] == [log.user_id for log in with_events]
  for a, b in zip(loaded.logs, with_events):
    np.testing.assert_array_equal(a.timestamps, b.timestamps)
    np.testing.assert_array_equal(a.events, b.events)
  assert loaded.num_rows == count and loaded.unknown_events == {}
  assert loaded.origin_timestamp == synthetic.ORIGIN_TIMESTAMP


def test_rows_in_any_order_give_the_same_logs(tmp_path, population):
  path = str(tmp_path / 'events.csv')
  events.write_events(population, path)
  header, *rows = open(path).read().splitlines()
  rng = np.random.default_rng(0)
  shuffled = str(tmp_path / 'shuffled.csv')
  with open(shuffled, 'w') as f:
    f.write('\n'.join([header] + [rows[i] for i in rng.permutation(len(rows))]) + '\n')
  a, b = events.load_events(path), events.load_events(shuffled)
  for x, y in zip(a.logs, b.logs):
    assert x.user_id == y.user_id
    np.testing.assert_array_equal(x.timestamps, y.timestamps)
    # Equal timestamps keep file order (stable); compare the multiset per second.
    assert sorted(zip(x.timestamps, x.events)) == sorted(zip(y.timestamps, y.events))


def test_timestamps_in_unix_seconds_or_iso_8601_agree():
  assert events.parse_timestamp('1704097800') == 1704097800
  assert events.parse_timestamp('1704097800.9') == 1704097800
  assert events.parse_timestamp('2024-01-01T08:30:00Z') == 1704097800
  assert events.parse_timestamp('2024-01-01T08:30:00') == 1704097800  # UTC
  assert events.parse_timestamp('2024-01-01T09:30:00+01:00') == 1704097800
  for bad in ('yesterday', 'nan', ''):
    with pytest.raises(ValueError):
      events.parse_timestamp(bad)


def _write(tmp_path, text, name='events.csv'):
  path = tmp_path / name
  path.write_text(text)
  return str(path)


@pytest.mark.parametrize('text, message', [
    ('', r'events.csv is empty: expected a header line with the columns user_id, '
         r'timestamp, event'),
    ('user_id,timestamp,event\n', r'events.csv has a header but no events'),
    ('user,timestamp,event\nu1,1704097800,play\n',
     r"events.csv: the header \(line 1\) lacks the column\(s\) user_id; found 'user', "
     r"'timestamp', 'event'"),
    ('user_id,timestamp,event\nu1,1704097800,play\nu2,yesterday,play\n',
     r"events.csv, line 3: unparseable timestamp 'yesterday'; expected Unix seconds"),
    ('user_id,timestamp,event\n,1704097800,play\n', r'events.csv, line 2: empty user_id'),
    ('user_id,timestamp,event\nu1,1704097800,\n', r'events.csv, line 2: empty event'),
    ('user_id,timestamp,event\nu1,1704097800,dance\n',
     r"none of its 1 events is in the vocabulary .*unknown: dance"),
])
def test_bad_files_name_the_file_line_and_problem(tmp_path, text, message):
  with pytest.raises(events.EventLogError, match=message):
    events.load_events(_write(tmp_path, text))


def test_a_spreadsheets_byte_order_mark_is_read_and_extra_cells_are_refused(tmp_path):
  text = 'user_id,timestamp,event\nu1,1704097800,play\n'
  with open(tmp_path / 'bom.csv', 'w', encoding='utf-8-sig') as f:
    f.write(text)
  assert [log.user_id for log in events.load_events(str(tmp_path / 'bom.csv')).logs] == [
      'u1']
  with pytest.raises(events.EventLogError,
                     match=r'events.csv, line 3: 1 more cell\(s\) than the 3 columns'):
    events.load_events(_write(tmp_path, text + 'u2,1704097801,play,oops\n'))


def test_unknown_events_are_dropped_and_counted_or_refused(tmp_path):
  path = _write(tmp_path, 'event,user_id,timestamp,extra\nplay,u1,1704097800,x\n'
                          'dance,u1,1704097801,y\ndance,u2,1704097802,z\n')
  loaded = events.load_events(path)  # columns in any order, extras ignored
  assert [log.user_id for log in loaded.logs] == ['u1']
  assert loaded.unknown_events == {'dance': 2} and loaded.num_rows == 3
  with pytest.raises(events.EventLogError,
                     match=r"line 3: event 'dance' is not in the vocabulary"):
    events.load_events(path, unknown_events='error')


def test_missing_file_unknown_suffix_and_bad_parquet_are_named(tmp_path):
  with pytest.raises(events.EventLogError, match=r'nope.csv: no such file'):
    events.load_events(str(tmp_path / 'nope.csv'))
  with pytest.raises(events.EventLogError, match=r'events.json: unknown file type'):
    events.load_events(_write(tmp_path, '{}', 'events.json'))
  with pytest.raises(events.EventLogError, match=r'events.parquet: not a readable Parquet'):
    events.load_events(_write(tmp_path, 'not parquet', 'events.parquet'))
  import pyarrow  # pylint: disable=g-import-not-at-top
  import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top

  path = str(tmp_path / 'cols.parquet')
  pq.write_table(pyarrow.table({'user_id': ['u'], 'time': [1]}), path)
  with pytest.raises(events.EventLogError,
                     match=r'cols.parquet: the schema lacks the column\(s\) timestamp, event'):
    events.load_events(path)


def test_source_values_are_checked():
  assert events.source_path('synthetic') is None
  assert events.source_path('events:/data/log.csv') == '/data/log.csv'
  with pytest.raises(ValueError, match=r"data.source must be 'synthetic' or 'events:PATH'"):
    events.source_path('events:')


@pytest.mark.slow
def test_train_on_a_bad_file_exits_2_with_a_message_and_writes_nothing(tmp_path):
  path = _write(tmp_path, 'user_id,timestamp,event\nu1,soon,play\n')
  workdir = tmp_path / 'run'
  proc = subprocess.run(
      [sys.executable, 'experiments/train.py', '--config=configs/churn.py',
       f'--workdir={workdir}', f'--config.data.source=events:{path}'],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2
  assert f"{path}, line 2: unparseable timestamp 'soon'" in proc.stderr
  assert 'Traceback' not in proc.stderr
  assert not workdir.exists()


# --- Issue 12, item 13: timestamps out of range, damaged files, exact line numbers ---

_GOOD = 'u1,1704097800,play\n'


@pytest.mark.parametrize('stamp', ['1e20', '-1e9', '4102444800', '2100-06-01T00:00:00Z'])
def test_timestamps_outside_the_plausible_window_are_refused_with_their_line(
    tmp_path, stamp):
  # 1e20 used to end in an OverflowError traceback; 2100 and -1e9 were accepted and
  # stretched the span to 27,760 days.
  path = _write(tmp_path, 'user_id,timestamp,event\n' + _GOOD * 3 + f'u2,{stamp},play\n')
  with pytest.raises(events.EventLogError,
                     match=rf"events.csv, line 5: timestamp '{stamp}' is outside the "
                           r'plausible window 1970-01-01T00:00:00Z to 2100-01-01T00:00:00Z'):
    events.load_events(path)


def test_the_window_settings_are_parsed_and_checked():
  assert events.parse_time_range('2023-01-01', 1800000000) == (1672531200, 1800000000)
  with pytest.raises(ValueError, match=r'data.min_time .* must be before data.max_time'):
    events.parse_time_range('2025-01-01T00:00:00Z', '2024-01-01T00:00:00Z')
  with pytest.raises(ValueError, match=r"data.max_time must be Unix seconds or ISO 8601"):
    events.parse_time_range(0, 'someday')


def test_window_setting_moves_what_is_refused(tmp_path):
  path = _write(tmp_path, 'user_id,timestamp,event\n' + _GOOD + 'u2,1600000000,play\n')
  assert len(events.load_events(path).logs) == 2
  with pytest.raises(events.EventLogError, match=r'events.csv, line 3: timestamp'):
    events.load_events(path, time_range=('2022-01-01T00:00:00Z', '2030-01-01T00:00:00Z'))


def test_a_non_utf8_byte_is_reported_on_its_own_line(tmp_path):
  # The text decoder reads ahead in blocks: line 2001 used to be reported as 1927.
  path = tmp_path / 'events.csv'
  lines = [b'user_id,timestamp,event\n'] + [b'u1,1704097800,play\n'] * 1999
  lines.append(b'u\xff2,1704097800,play\n')
  path.write_bytes(b''.join(lines + [b'u3,1704097800,play\n'] * 50))
  with pytest.raises(events.EventLogError,
                     match=r'events.csv, line 2001: byte 0xff at column 2 is not UTF-8'):
    events.load_events(str(path))


def test_a_corrupt_parquet_data_page_names_the_file(tmp_path, population):
  path = tmp_path / 'events.parquet'
  events.write_events(population, str(path))
  data = bytearray(path.read_bytes())
  middle = len(data) // 3  # inside the column chunks, after the 4-byte magic
  data[middle:middle + 64] = b'\x00' * 64
  path.write_bytes(bytes(data))
  with pytest.raises(events.EventLogError,
                     match=r'events.parquet: its data cannot be read .*the file is damaged'):
    events.load_events(str(path))


def test_duplicate_rows_and_nul_bytes_in_ids_are_kept_and_reported(tmp_path):
  path = _write(tmp_path, 'user_id,timestamp,event\n' + _GOOD * 3
                + 'u\x002,1704097800,play\n')
  loaded = events.load_events(path)
  assert sorted(len(log.events) for log in loaded.logs) == [1, 3]
  assert any('2 rows repeat another row' in w for w in loaded.warnings)
  assert any('1 user ids contain NUL bytes' in w for w in loaded.warnings)
  assert not events.load_events(_write(tmp_path, 'user_id,timestamp,event\n' + _GOOD,
                                       'clean.csv')).warnings
