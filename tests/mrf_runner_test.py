"""The in-process MapReduceForm engine gives what TFF's C++ runtime gives."""

import os

import numpy as np
import pytest

from fl_analytics.core import rundir
from fl_analytics.core import runtime
from fl_analytics.runs import training
from tests import training_test


@pytest.mark.cpp
@pytest.mark.parametrize('overrides', [
    {'dp.mechanism': 'gaussian_adaptive'},
    {'dp.mechanism': 'gaussian_fixed', 'dp.secure_sum': True},
    {'dp.mechanism': 'tree', 'sampling': 'shuffle'},
], ids=['adaptive', 'fixed-secure-sum', 'tree'])
def test_mapreduce_engine_matches_the_cpp_runtime(tmp_path, overrides):
  runs = {}
  for engine in ('cpp', 'mapreduce'):
    workdir = str(tmp_path / engine)
    before = runtime.worker_pids_owned_by(os.getpid())
    training.train_and_evaluate(
        training_test.tiny_config(**overrides, **{'runtime.engine': engine}), workdir)
    runs[engine] = (training_test._metrics(workdir),  # pylint: disable=protected-access
                    rundir.load_checkpoint(workdir, 2))
    assert runtime.worker_pids_owned_by(os.getpid()) - before == set()
  (cpp_rows, cpp_state), (mrf_rows, mrf_state) = runs['cpp'], runs['mapreduce']
  assert [r['cohort_size'] for r in cpp_rows] == [r['cohort_size'] for r in mrf_rows]
  for a, b in zip(cpp_rows, mrf_rows):
    for key in ('epsilon', 'train_loss', 'train_accuracy', 'eval_loss', 'eval_auc', 'clip'):
      assert float(a[key]) == pytest.approx(float(b[key]), rel=1e-5, abs=1e-7), key
  assert len(cpp_state) == len(mrf_state)
  for a, b in zip(cpp_state, mrf_state):
    if np.asarray(a).dtype.kind in 'fiu':
      np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-6)
    else:
      assert np.array_equal(np.asarray(a), np.asarray(b))
