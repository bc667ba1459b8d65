"""What every script under `experiments/` shares: flags parsed into one line on error.

absl answers a bad flag value with "FATAL Flags parsing error" and a usage hint, and an
unknown `--config.KEY` (ml_collections) with a chained traceback of 60 lines. `run`
parses the flags itself and prints one line, `error: ...`, with exit code 2, the code
the scripts use for every input they refuse. Imports only absl.
"""

from __future__ import annotations

import sys
from typing import Callable, NoReturn

from absl import app
from absl import flags

USAGE_ERROR = 2  # exit code of a refused input (bad flag, config or file)


def fail(message: str) -> NoReturn:
  """Prints `error: message` on one line and exits with USAGE_ERROR."""
  print(f'error: {" ".join(str(message).split())}', file=sys.stderr)
  raise SystemExit(USAGE_ERROR)


def _unknown_key(argv: list[str], error: Exception) -> str:
  name = str(error).strip('"\' ')
  flag = next((a.split('=', 1)[0] for a in argv if a.startswith('--config.')
               and name in a.split('=', 1)[0].split('.')), None)
  return (f'{flag or "a --config override"}: the config has no key {name!r}; the keys '
          'are those of the config file (docs/configuration.md).')


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with one-line errors (`fail`) instead of tracebacks."""
  try:
    rest = flags.FLAGS(argv)
  except flags.Error as e:
    fail(e)
  except (KeyError, AttributeError) as e:  # ml_collections: unknown --config.KEY
    fail(_unknown_key(argv, e))
  except (OSError, ValueError, TypeError) as e:  # a config file that does not load
    cause = f' ({e.__cause__})' if e.__cause__ else ''
    fail(f'{e}{cause}')
  if len(rest) > 1:  # absl would print the whole usage text
    fail(f'unexpected argument(s) {" ".join(rest[1:])}: every input is a --flag '
         '(--help lists them).')
  return rest


def run(main: Callable[[list[str]], None], *, interrupted: str = 'Interrupted.') -> None:
  """`absl.app.run(main)` with `parse_flags`; Ctrl-C prints `interrupted`, exit 130."""
  try:
    app.run(main, flags_parser=parse_flags)
  except KeyboardInterrupt:
    print(interrupted, file=sys.stderr)
    raise SystemExit(130) from None
