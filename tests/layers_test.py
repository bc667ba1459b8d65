"""The package's layers: imports go one way, down the table below, and nothing cycles.

Every import counts, also one inside a function. A subpackage may import its own modules
and those of any lower layer; two subpackages on the same layer import neither the
other. The rule and the reasons for the cut are in docs/architecture.md.
"""

import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / 'fl_analytics'

# Subpackage -> layer. Lower layers never import higher ones.
LAYERS = {
    'core': 0,       # run directory files, configs, CLI helpers, owned processes
    'data': 1,       # populations, event logs, featurization, device behaviour
    'cluster': 1,    # connecting to Ray
    'tasks': 2,      # what is learnt: examples, model, loss, metrics
    'privacy': 3,    # sampling, mechanisms, aggregators, accounting, statement, audit,
                     # budget ledger, secret sharing
    'engines': 4,    # how a round executes
    'analytics': 4,  # federated analytics queries
    'reporting': 5,  # reading finished runs: summaries, figures
    'runs': 6,       # one run: the training loop, recording, evaluation
    'sweeps': 7,     # many runs
    'export': 7,     # the model to the device
}


def _module_name(path: pathlib.Path) -> str:
  parts = list(path.relative_to(ROOT).with_suffix('').parts)
  if parts[-1] == '__init__':
    parts.pop()
  return '.'.join(parts)


def _modules() -> dict[str, pathlib.Path]:
  return {_module_name(p): p for p in sorted(PACKAGE.rglob('*.py'))}


def _is_module(name: str, modules) -> bool:
  return name in modules


def _imports(path: pathlib.Path, modules, this: str = '') -> set[str]:
  """The fl_analytics modules `path` (module `this`) imports, anywhere in the file."""
  found = set()
  this = this or _module_name(path)
  package = this if path.name == '__init__.py' else this.rpartition('.')[0]
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ''
      if node.level:
        anchor = package.split('.')[:len(package.split('.')) - node.level + 1]
        base = '.'.join(anchor + ([base] if base else []))
      names = [f'{base}.{a.name}' if _is_module(f'{base}.{a.name}', modules) else base
               for a in node.names]
    else:
      continue
    for name in names:
      while name and not _is_module(name, modules):
        name = name.rpartition('.')[0]
      if name and name.startswith('fl_analytics') and name != this:
        found.add(name)
  return found


def _graph():
  modules = _modules()
  return {name: _imports(path, modules) for name, path in modules.items()}


def _layer(module: str):
  parts = module.split('.')
  return parts[1] if len(parts) > 1 else None


def test_every_module_is_in_a_layer():
  unplaced = [m for m in _modules() if m != 'fl_analytics' and _layer(m) not in LAYERS]
  assert not unplaced, (f'{unplaced}: put each module in a subpackage of the layer table '
                        '(tests/layers_test.py, docs/architecture.md)')


def test_imports_only_go_down_the_layers():
  upward = []
  for module, imported in _graph().items():
    here = _layer(module)
    for target in imported:
      there = _layer(target)
      if there is None or here is None:
        continue
      if there != here and LAYERS[there] >= LAYERS[here]:
        upward.append(f'{module} ({here}, layer {LAYERS[here]}) imports {target} '
                      f'({there}, layer {LAYERS[there]})')
  assert not upward, '\n'.join(sorted(upward))


def test_no_import_cycles():
  graph = _graph()
  state, stack, cycles = {}, [], []

  def visit(node):
    state[node] = 'open'
    stack.append(node)
    for nxt in sorted(graph.get(node, ())):
      if state.get(nxt) == 'open':
        cycles.append(' -> '.join(stack[stack.index(nxt):] + [nxt]))
      elif nxt not in state:
        visit(nxt)
    stack.pop()
    state[node] = 'done'

  for node in sorted(graph):
    if node not in state:
      visit(node)
  assert not cycles, '\n'.join(cycles)


def test_the_library_imports_no_script_or_benchmark():
  for path in PACKAGE.rglob('*.py'):
    for node in ast.walk(ast.parse(path.read_text())):
      names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
               [node.module or ''] if isinstance(node, ast.ImportFrom) else [])
      for name in names:
        assert name.split('.')[0] not in ('benchmarks', 'experiments', 'configs', 'tests'), (
            f'{path.relative_to(ROOT)} imports {name}')


@pytest.mark.parametrize('module,imports,bad', [
    ('fl_analytics.data.x', {'fl_analytics.privacy.y'}, True),
    ('fl_analytics.runs.x', {'fl_analytics.privacy.y'}, False),
    ('fl_analytics.engines.x', {'fl_analytics.analytics.y'}, True),  # same layer
])
def test_the_layer_rule_itself(module, imports, bad):
  here = _layer(module)
  flagged = any(_layer(t) != here and LAYERS[_layer(t)] >= LAYERS[here] for t in imports)
  assert flagged == bad


def test_the_import_finder_sees_imports_inside_functions(tmp_path):
  modules = {'fl_analytics.a.m': None, 'fl_analytics.b.n': None, 'fl_analytics.b': None}
  src = tmp_path / 'm.py'
  src.write_text('def f():\n  from fl_analytics.b import n\n')
  assert _imports(src, modules, 'fl_analytics.a.m') == {'fl_analytics.b.n'}


# The layers whose modules import neither TensorFlow nor TFF when imported (they may
# when they build something), and the TensorFlow code inside them, which their
# registries import only when it is built; docs/architecture.md's table says which.
LIGHT = ('core', 'data', 'cluster', 'tasks', 'privacy', 'engines', 'reporting', 'sweeps')
TENSORFLOW_INSIDE = ('fl_analytics.engines.floor', 'fl_analytics.engines.mrf_runner',
                     'fl_analytics.engines.vectorized', 'fl_analytics.engines.stacked',
                     'fl_analytics.privacy.seeded_noise',
                     'fl_analytics.privacy.correlated_noise')


def test_the_light_layers_import_neither_tensorflow_nor_tff():
  names = sorted(m for m in _modules()
                 if _layer(m) in LIGHT and m not in TENSORFLOW_INSIDE)
  code = ('import importlib, sys\n'
          f'for name in {names!r}:\n'
          '  importlib.import_module(name)\n'
          'print(sorted(m for m in ("tensorflow", "tensorflow_federated") '
          'if m in sys.modules))')
  done = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True,
                        text=True, timeout=120)
  assert done.returncode == 0, done.stderr[-2000:]
  assert done.stdout.strip() == '[]', f'imported: {done.stdout.strip()} by {names}'


MAX_FUNCTION_LINES = 60


def test_no_function_in_the_library_or_the_scripts_is_over_60_lines():
  long = []
  for folder in ('fl_analytics', 'experiments', 'benchmarks'):
    for path in sorted((ROOT / folder).rglob('*.py')):
      for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
          lines = node.end_lineno - node.lineno + 1
          if lines > MAX_FUNCTION_LINES:
            long.append(f'{path.relative_to(ROOT)}:{node.lineno} {node.name}: {lines} lines')
  assert not long, '\n'.join(long)
