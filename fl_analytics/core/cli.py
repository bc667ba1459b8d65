"""What every script under `experiments/` shares: one line for every fault.

absl answers a bad flag value with "FATAL Flags parsing error" and a usage hint, an
unknown `--config.KEY` (ml_collections) with a chained traceback of 60 lines, and a
config file that does not load with its traceback, flattened onto one line or raised
later from the first key read. `run` parses the flags itself and sorts what goes wrong
into three kinds, the same in every script:

* a refused input (a bad flag, config key or value, a file that cannot be used: the
  script's `known` exception types): one line, `error: ...`, exit code 2;
* a run that failed for a reason its message states (the script's `failures`: a loss
  that diverged, a cluster that went away): one line, exit code 1; so does an
  operating-system fault naming its file (disk full, permission denied);
* anything else is a bug: one line naming the log file that holds the traceback
  (`error.log` in the script's working directory when it has one, else a file under
  the system's temporary directory), exit code 1.

SIGTERM (with `install_sigterm_handler`) and Ctrl-C print the script's `interrupted`
line and exit 143 and 130. Imports only absl and the standard library (and, at exit,
TFF's context stack when TFF was imported).
"""

from __future__ import annotations

import atexit
import datetime
import os
import signal
import sys
import tempfile
import traceback
from typing import Callable, NoReturn, Optional, Sequence

from absl import app
from absl import flags

USAGE_ERROR = 2  # exit code of a refused input (bad flag, config or file)
RUN_FAILED = 1  # exit code of a run that failed (divergence, a lost cluster, a bug)
ERROR_LOG = 'error.log'  # in the script's directory (`log_dir`), when it has one
_CONFIG_WRAPPED = 'Error whilst parsing config file:'  # ml_collections' TypeError/ValueError


class Terminated(SystemExit):
  """SIGTERM, raised in the main thread (`install_sigterm_handler`) so that `finally`
  blocks and context managers run; exit code 128 + SIGTERM."""

  def __init__(self):
    super().__init__(128 + signal.SIGTERM)


def install_sigterm_handler() -> None:
  """Makes SIGTERM raise `Terminated` in the main thread."""

  def handler(signum, frame):
    del signum, frame
    raise Terminated()

  signal.signal(signal.SIGTERM, handler)


def one_line(message) -> str:
  return ' '.join(str(message).split())


def fail(message: str, code: int = USAGE_ERROR) -> NoReturn:
  """Prints `error: message` on one line and exits with `code`."""
  print(f'error: {one_line(message)}', file=sys.stderr)
  raise SystemExit(code)


def _unknown_key(argv: list[str], error: Exception) -> str:
  name = str(error).strip('"\' ')
  flag = next((a.split('=', 1)[0] for a in argv if a.startswith('--config.')
               and name in a.split('=', 1)[0].split('.')), None)
  return (f'{flag or "a --config override"}: the config has no key {name!r}; the keys '
          'are those of the config file (docs/configuration.md).')


def _config_flags() -> list:
  """The flags defined by ml_collections' `DEFINE_config_file`."""
  return [f for f in flags.FLAGS._flags().values()  # pylint: disable=protected-access
          if type(f.parser).__name__ == 'ConfigFileFlagParser']


def _config_error(error: BaseException) -> str:
  """Why a config file did not load, in one line naming its file and line."""
  text = str(error)
  if _CONFIG_WRAPPED in text:  # a traceback formatted into the message
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    where = [l for l in lines if l.startswith('File "')]
    return f'{lines[-1]} ({where[-1]})' if where else lines[-1]
  if isinstance(error, SyntaxError):
    return f'SyntaxError: {error.msg} ({error.filename}, line {error.lineno})'
  frames = traceback.extract_tb(error.__traceback__)
  where = f' ({frames[-1].filename}, line {frames[-1].lineno})' if frames else ''
  cause = f': {error.__cause__}' if isinstance(error, OSError) and error.__cause__ else ''
  return f'{type(error).__name__}: {text}{cause}{where}'


def _config_argument(argv: Sequence[str]) -> str:
  names = [f'--{f.name}' for f in _config_flags()] or ['--config']
  return next((a for a in argv if a.split('=', 1)[0] in names), names[0])


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with one-line errors (`fail`) instead of tracebacks; a config
  file that does not load is refused here, naming its file and line."""
  try:
    rest = flags.FLAGS(argv)
  except flags.Error as e:
    if _CONFIG_WRAPPED in str(e):
      fail(f'{_config_argument(argv)}: the config file does not load: {_config_error(e)}')
    fail(e)
  except (KeyError, AttributeError) as e:  # ml_collections: unknown --config.KEY
    fail(_unknown_key(argv, e))
  except Exception as e:  # pylint: disable=broad-except
    # a config file's own error (SyntaxError, NameError, ...) raised from get_config()
    fail(f'{_config_argument(argv)}: the config file does not load: {_config_error(e)}')
  for flag in _config_flags():
    error = getattr(flag.value, '_error', None)  # ml_collections' _ErrorConfig
    if flag.present and error is not None:
      path = flag.config_filename.split(':', 1)[0]
      if not os.path.isfile(path):
        fail(f'--{flag.name}={path}: no such file (the configs are in configs/).')
      fail(f'--{flag.name}={path}: the config file does not load: {_config_error(error)}')
  if len(rest) > 1:  # absl would print the whole usage text
    fail(f'unexpected argument(s) {" ".join(rest[1:])}: every input is a --flag '
         '(--help lists them).')
  return rest


def _log_path(log_dir: Optional[str]) -> str:
  if log_dir and os.path.isdir(log_dir) and os.access(log_dir, os.W_OK):
    return os.path.join(log_dir, ERROR_LOG)
  directory = os.path.join(tempfile.gettempdir(), 'fl-analytics')
  os.makedirs(directory, exist_ok=True)
  script = os.path.splitext(os.path.basename(sys.argv[0] or 'script'))[0]
  stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S')
  return os.path.join(directory, f'{script}-{stamp}-{os.getpid()}.log')


def _unexpected(error: BaseException, log_dir: Optional[str]) -> NoReturn:
  """A bug: the traceback to a log file, one line naming it to the terminal."""
  try:
    path = _log_path(log_dir)
    with open(path, 'a') as f:
      f.write(f'{datetime.datetime.now().isoformat()} {" ".join(sys.argv)}\n')
      traceback.print_exception(error, file=f)
      f.write('\n')
    where = f'the traceback is in {path}'
  except OSError:
    traceback.print_exception(error, file=sys.stderr)
    where = 'the traceback is above (no log file could be written)'
  fail(f'unexpected {type(error).__name__}: {error}; {where}. Please report it.',
       RUN_FAILED)


def _release_tff_context() -> None:
  """Drops the local C++ context that importing TFF installs, while modules still
  exist: at interpreter teardown its `ServiceManager.__del__` finds `subprocess` gone and
  prints "Exception ignored ... 'NoneType' object has no attribute 'Popen'" after the
  script's last line (TFF 0.87)."""
  if 'tensorflow_federated' not in sys.modules:
    return
  # pylint: disable=g-import-not-at-top
  from tensorflow_federated.python.core.impl.context_stack import context_stack_impl
  from tensorflow_federated.python.core.impl.context_stack import runtime_error_context
  context_stack_impl.context_stack.set_default_context(
      runtime_error_context.RuntimeErrorContext())


def run(main: Callable[[list[str]], None], *, interrupted: str = 'Interrupted.',
        known: Sequence[type] = (), failures: Sequence[type] = (),
        log_dir: Callable[[], Optional[str]] = lambda: None) -> None:
  """`absl.app.run(main)` with `parse_flags` and the faults sorted as the module
  docstring says. `known`: exception types of refused inputs (exit 2); `failures`:
  of runs that failed for a stated reason (exit 1); `log_dir()`: where `error.log` goes
  (e.g. the --workdir flag's value), when it is a directory."""
  known, failures = tuple(known), tuple(failures)
  atexit.register(_release_tff_context)

  def guarded(argv):
    try:
      return main(argv)
    except (SystemExit, KeyboardInterrupt):
      raise
    except known as e:
      fail(e)
    except failures as e:
      fail(e, RUN_FAILED)
    except OSError as e:
      if e.filename is None:
        _unexpected(e, log_dir())
      fail(f'{e.filename}: {e.strerror or e}', RUN_FAILED)
    except Exception as e:  # pylint: disable=broad-except
      _unexpected(e, log_dir())

  try:
    app.run(guarded, flags_parser=parse_flags)
  except KeyboardInterrupt:
    print(interrupted, file=sys.stderr)
    raise SystemExit(130) from None
  except Terminated:
    print(f'Terminated (SIGTERM). {interrupted}', file=sys.stderr)
    raise SystemExit(128 + signal.SIGTERM) from None
