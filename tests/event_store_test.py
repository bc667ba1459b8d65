"""The event store: an event file read once into per-user arrays on disk, reused."""

import os

import numpy as np
import pytest

from fl_analytics.core import rundir
from fl_analytics.data import event_store
from fl_analytics.data import events
from fl_analytics.data import synthetic


def _logs():
  return synthetic.generate_population(num_users=40, seed=3, num_days=20)


@pytest.fixture(params=['csv', 'parquet'])
def event_file(request, tmp_path):
  path = str(tmp_path / f'events.{request.param}')
  events.write_events(_logs(), path)
  return path


def _assert_same_logs(store, logs):
  assert store.num_users == len(logs)
  for u, log in enumerate(logs):
    got = store.log(u)
    assert got.user_id == log.user_id
    np.testing.assert_array_equal(got.timestamps, log.timestamps)
    np.testing.assert_array_equal(got.events, log.events)
    assert got.events.dtype == np.int32 and got.timestamps.dtype == np.int64


def test_store_round_trips_the_file_exactly(event_file, monkeypatch):
  monkeypatch.setattr(events, 'CHUNK_ROWS', 1000)  # many chunks, users across chunks
  monkeypatch.setattr(event_store, '_SORT_BLOCK_EVENTS', 3000)
  store = event_store.open_store(event_file)
  in_memory = events.load_events(event_file)
  _assert_same_logs(store, in_memory.logs)
  # ... and the generator's logs, which the file holds (users with events, by id).
  _assert_same_logs(store, [log for log in _logs() if len(log.events)])
  assert store.origin_timestamp == in_memory.origin_timestamp
  assert store.num_days == in_memory.num_days
  assert store.meta['num_rows'] == in_memory.num_rows == store.num_events


def test_rows_out_of_order_with_duplicates_and_ties_match_the_in_memory_reader(tmp_path):
  path = str(tmp_path / 'mixed.csv')
  with open(path, 'w') as f:
    f.write('user_id,timestamp,event\n'
            'b,200,play\na,100,search\nb,100,like\nb,200,app_open\na,100,search\n'
            'c,50,nope\nb,150,play\n')
  store = event_store.open_store(path)
  loaded = events.load_events(path)
  _assert_same_logs(store, loaded.logs)
  assert store.meta['warnings'] == list(loaded.warnings)
  assert store.meta['unknown_events'] == {'nope': 1}
  assert [store.user_id(u) for u in range(store.num_users)] == ['a', 'b']


def test_a_second_open_reuses_the_store_and_a_changed_file_is_rebuilt(tmp_path):
  path = str(tmp_path / 'events.csv')
  events.write_events(_logs()[:10], path)
  built = []
  real = event_store.build_store
  event_store.build_store = lambda *a, **k: built.append(a[0]) or real(*a, **k)
  try:
    event_store.open_store(path)
    event_store.open_store(path)
    assert len(built) == 1
    # Same bytes, new modification time: recognized by its SHA-256, not rebuilt.
    os.utime(path, ns=(1, 1))
    event_store.open_store(path)
    assert len(built) == 1
    events.write_events(_logs()[:12], path)
    store = event_store.open_store(path)
    assert len(built) == 2
    _assert_same_logs(store, [l for l in _logs()[:12] if len(l.events)])
    # Other settings (the time window) build it again too.
    event_store.open_store(path, time_range=(0, 2_000_000_000))
    assert len(built) == 3
  finally:
    event_store.build_store = real
  assert sorted(os.listdir(tmp_path)) == ['events.csv', 'events.csv.store',
                                          'events.csv.store.lock']


def test_a_bad_row_is_reported_with_its_line_and_leaves_no_store(tmp_path):
  path = str(tmp_path / 'bad.csv')
  with open(path, 'w') as f:
    f.write('user_id,timestamp,event\na,100,play\na,yesterday,play\n')
  with pytest.raises(events.EventLogError, match=r'bad.csv, line 3: unparseable timestamp'):
    event_store.open_store(path)
  assert sorted(os.listdir(tmp_path)) == ['bad.csv', 'bad.csv.store.lock']


def test_progress_lines_name_the_file_and_the_share_read(tmp_path, monkeypatch):
  monkeypatch.setattr(events, 'CHUNK_ROWS', 500)
  path = str(tmp_path / 'events.csv')
  events.write_events(_logs(), path)
  lines = []
  event_store.open_store(path, progress=lines.append)
  assert any('1,000 rows read (' in l and '%)' in l for l in lines)
  assert 'users stored in' in lines[-1]


def _same_size_edit(path):
  """One timestamp changed to another of the same length, the mtime restored."""
  st = os.stat(path)
  with open(path) as f:
    lines = f.read().split('\n')
  row = lines[1].split(',')
  i = max(k for k, c in enumerate(row[1]) if c.isdigit())  # the last digit of the seconds
  row[1] = row[1][:i] + ('1' if row[1][i] != '1' else '2') + row[1][i + 1:]
  lines[1] = ','.join(row)
  with open(path, 'w') as f:
    f.write('\n'.join(lines))
  os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
  assert os.path.getsize(path) == st.st_size


def test_a_same_size_edit_with_the_old_mtime_is_seen_by_its_fingerprint(tmp_path):
  path = str(tmp_path / 'events.csv')
  events.write_events(_logs()[:10], path)
  before = event_store.open_store(path)
  assert before.fingerprint == 'sha256:' + rundir.file_digest(path)
  _same_size_edit(path)
  after = event_store.open_store(path)
  assert after.fingerprint == 'sha256:' + rundir.file_digest(path) != before.fingerprint
  _assert_same_logs(after, events.load_events(path).logs)


def test_the_fingerprint_is_of_the_bytes_the_build_read(event_file):
  # CSV: hashed in the build's own pass; Parquet: hashed before its columns are read.
  store = event_store.open_store(event_file)
  assert store.meta['source']['sha256'] == rundir.file_digest(event_file)


@pytest.mark.parametrize('damage', ['deleted', 'truncated', 'emptied', 'other_store'])
def test_a_damaged_store_is_built_again(tmp_path, damage):
  path = str(tmp_path / 'events.csv')
  events.write_events(_logs()[:10], path)
  store_dir = event_store.store_path(path)
  event_store.open_store(path)
  array = os.path.join(store_dir, 'timestamps.npy')
  if damage == 'deleted':
    os.unlink(array)
  elif damage == 'truncated':
    with open(array, 'r+b') as f:
      f.truncate(os.path.getsize(array) - 16)
  elif damage == 'emptied':
    open(array, 'w').close()
  else:  # a valid array of another store: fewer events
    np.save(array, np.zeros(3, np.int64))
  store = event_store.open_store(path)
  _assert_same_logs(store, events.load_events(path).logs)


def test_an_event_file_is_read_against_the_vocabulary_of_its_generator(tmp_path):
  from fl_analytics.data import app_paths  # pylint: disable=g-import-not-at-top

  batch = app_paths.generate_users(np.arange(25), seed=1, num_days=20, quantity_skew=1.0,
                                   label_skew=1.0, feature_skew=1.0)
  logs = [batch.log(k) for k in range(len(batch))]
  path = str(tmp_path / 'events.csv')
  events.write_events(logs, path, app_paths.VOCABULARY)
  store = event_store.open_store(path, vocabulary=app_paths.VOCABULARY)
  _assert_same_logs(store, [log for log in logs if len(log.events)])
  # Read against the default vocabulary, the names it lacks are unknown (dropped), and
  # the store is built again for it.
  default = event_store.open_store(path)
  assert 'home_view' in default.meta['unknown_events']
  assert default.num_events < store.num_events
  assert event_store.open_store(path, vocabulary=app_paths.VOCABULARY).num_events == (
      store.num_events)
