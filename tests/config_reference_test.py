"""docs/configuration.md is the reference generated from the config files, and current."""

import importlib.util
import os

from fl_analytics.core import config_files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _script():
  spec = importlib.util.spec_from_file_location(
      'config_reference', os.path.join(REPO, 'experiments', 'config_reference.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_configuration_reference_is_current():
  with open(os.path.join(REPO, 'docs', 'configuration.md')) as f:
    committed = f.read()
  assert committed == _script().render(), (
      'docs/configuration.md is stale: run `make docs` and commit it.')


def test_every_key_of_the_configs_is_documented():
  for path in ('configs/churn.py', 'configs/next_action.py'):
    for keys, comment in config_files.key_comments(os.path.join(REPO, path)):
      assert comment, f'{path}: {", ".join(keys)} has no comment'


def test_keys_sharing_a_line_run_share_one_comment(tmp_path):
  path = tmp_path / 'c.py'
  path.write_text('def get_config():\n'
                  '  # The window.\n'
                  '  c.a.lo = 1\n'
                  '  c.a.hi = 2\n'
                  '\n'
                  '  c.b = 3  # three\n')
  assert config_files.key_comments(str(path)) == [(['a.lo', 'a.hi'], 'The window.'),
                                                  (['b'], 'three')]
