"""experiments/analytics.py: bad settings are refused in one line, before anything runs
(a session past its budget: tests/ledger_test.py)."""

import os
import subprocess
import sys

import pytest

from tests import helpers


@pytest.mark.slow
@pytest.mark.parametrize('flags, message', [
    (['--queries=funnel,teleport'], 'analytics.queries must list queries among'),
    (['--config.analytics.settings.funnel.steps=("item_view","teleport")',
      '--queries=funnel'], "['teleport'] are not"),
])
def test_bad_settings_are_refused_in_one_line_before_anything_is_written(
    tmp_path, flags, message):
  workdir = tmp_path / 'session'
  done = subprocess.run(
      [sys.executable, 'experiments/analytics.py', '--config=configs/analytics.py',
       f'--workdir={workdir}', '--config.data.num_users=100', *flags],
      cwd=helpers.REPO, capture_output=True, text=True, timeout=300)
  assert done.returncode == 2, done.stderr[-2000:]
  last = done.stderr.strip().splitlines()[-1]
  assert last.startswith('error: ') and message in last, last
  assert 'Traceback' not in done.stderr
  assert not os.path.exists(workdir)
