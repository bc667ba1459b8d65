"""Every script's faults in one line (`fl_analytics.core.cli`), tried on a tiny script
that imports only the CLI module, so these run in a second each."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_SCRIPT = textwrap.dedent('''
    import errno, os, sys, time
    from absl import flags
    from ml_collections import config_flags
    from fl_analytics.core import cli

    class Refused(ValueError):
      pass

    _CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file.')
    _FAULT = flags.DEFINE_string('fault', 'none', 'What goes wrong.')
    _WORKDIR = flags.DEFINE_string('workdir', None, 'Where error.log goes.')

    def main(argv):
      del argv
      cli.install_sigterm_handler()
      fault = _FAULT.value
      if fault == 'known':
        raise Refused('data.num_users must be positive. Found -1.')
      if fault == 'failure':
        raise ConnectionError('the cluster went away')
      if fault == 'bug':
        {}['missing']
      if fault == 'disk_full':
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), '/run/metrics.csv')
      if fault == 'wait':
        print('ready', flush=True)
        time.sleep(60)
      print('config', _CONFIG.value.x if _CONFIG.value else None)

    if __name__ == '__main__':
      cli.run(main, interrupted='Interrupted; run it again.', known=(Refused,),
              failures=(ConnectionError,), log_dir=lambda: _WORKDIR.value)
''')


@pytest.fixture
def script(tmp_path):
  path = tmp_path / 'script.py'
  path.write_text(_SCRIPT)
  return path


def _run(script, *args):
  env = {**os.environ, 'PYTHONPATH': REPO}
  return subprocess.run([sys.executable, str(script), *args], capture_output=True,
                        text=True, timeout=60, env=env)


def _config(tmp_path, body):
  path = tmp_path / 'config.py'
  path.write_text(textwrap.dedent(body))
  return path


_GOOD = '''
    import ml_collections
    def get_config():
      return ml_collections.ConfigDict({'x': 1})
'''


def _one_line(result):
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: '), result.stderr
  return lines[0]


@pytest.mark.parametrize('fault,code,expected', [
    ('known', 2, 'error: data.num_users must be positive. Found -1.'),
    ('failure', 1, 'error: the cluster went away'),
    ('disk_full', 1, 'error: /run/metrics.csv: No space left on device'),
])
def test_known_faults_and_failures_are_one_line(script, tmp_path, fault, code, expected):
  result = _run(script, f'--config={_config(tmp_path, _GOOD)}', f'--fault={fault}')
  assert result.returncode == code
  assert _one_line(result) == expected


def test_a_bug_is_one_line_naming_the_log_that_holds_its_traceback(script, tmp_path):
  workdir = tmp_path / 'run'
  workdir.mkdir()
  result = _run(script, f'--config={_config(tmp_path, _GOOD)}', '--fault=bug',
                f'--workdir={workdir}')
  assert result.returncode == 1
  line = _one_line(result)
  assert "unexpected KeyError: 'missing'" in line
  log = workdir / 'error.log'
  assert str(log) in line
  assert "{}['missing']" in log.read_text() and 'Traceback' in log.read_text()


def test_a_bug_without_a_directory_logs_to_the_temporary_directory(script, tmp_path):
  result = _run(script, f'--config={_config(tmp_path, _GOOD)}', '--fault=bug',
                f'--workdir={tmp_path / "missing"}')
  line = _one_line(result)
  path = line.split('the traceback is in ')[1].split('. Please')[0]
  assert os.path.dirname(path).endswith('fl-analytics')
  assert 'KeyError' in open(path).read()
  os.unlink(path)


@pytest.mark.parametrize('body,expected', [
    (None, '--config={path}: no such file'),
    ('def get_config(:\n', 'SyntaxError: invalid syntax ({path}, line 1)'),
    ('def get_config():\n  raise RuntimeError("boom")\n',
     'RuntimeError: boom ({path}, line 2)'),
    ('def get_config():\n  raise ValueError("bad value")\n',
     'ValueError: bad value (File "{path}", line 2, in get_config)'),
])
def test_a_config_file_that_does_not_load_is_one_line_naming_its_line(
    script, tmp_path, body, expected):
  path = tmp_path / 'config.py'
  if body is not None:
    path.write_text(body)
  result = _run(script, f'--config={path}')
  assert result.returncode == 2
  assert expected.format(path=path) in _one_line(result)


def test_sigterm_prints_the_interrupted_line_and_exits_143(script, tmp_path):
  env = {**os.environ, 'PYTHONPATH': REPO}
  proc = subprocess.Popen(
      [sys.executable, str(script), f'--config={_config(tmp_path, _GOOD)}', '--fault=wait'],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
  assert proc.stdout.readline().strip() == 'ready'
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=30)
  assert proc.returncode == 143
  assert err.strip() == 'Terminated (SIGTERM). Interrupted; run it again.'


def test_a_good_run_is_untouched(script, tmp_path):
  result = _run(script, f'--config={_config(tmp_path, _GOOD)}')
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip() == 'config 1'
