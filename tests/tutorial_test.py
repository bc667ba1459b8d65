"""docs/tutorial.ipynb runs, in its fast form, and shows what it says it shows."""

import os

import nbclient
import nbformat
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_tutorial_runs_and_shows_a_run_its_epsilon_a_sweep_and_the_frontier(monkeypatch):
  monkeypatch.setenv('FL_TUTORIAL_FAST', '1')
  notebook = nbformat.read(os.path.join(REPO, 'docs', 'tutorial.ipynb'), as_version=4)
  nbclient.NotebookClient(notebook, timeout=600, kernel_name='python3',
                          resources={'metadata': {'path': REPO}}).execute()
  outputs = [o for cell in notebook.cells if cell.cell_type == 'code'
             for o in cell.get('outputs', [])]
  text = ''.join(o.get('text', '') for o in outputs if o.get('output_type') == 'stream')
  assert 'fast form: True' in text
  assert '5 rounds, epsilon 2 at delta 1e-05' in text  # the run, calibrated to its target
  assert 'unit_of_privacy    one user' in text
  assert text.count('noise multiplier ') >= 5  # the accountant's answers
  assert 'mechanism-gaussian_adaptive_target_epsilon-8' in text  # the sweep's summary
  assert any('image/png' in o.get('data', {}) for o in outputs)  # the frontier
