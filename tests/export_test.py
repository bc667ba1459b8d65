"""Exporting a run's model to TensorFlow Lite: parity, raw events, personalization.

One tiny DP run per task (module fixture), exported once; the tests read what the
export measured and check it independently where they can.
"""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from fl_analytics.export import tflite
from fl_analytics.core import rundir
from fl_analytics import tasks
from fl_analytics.runs import training
from fl_analytics.data import clients
from tests.helpers import tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _next_action_config():
  from configs import next_action  # pylint: disable=g-import-not-at-top

  config = next_action.get_config()
  for key in ('num_rounds', 'eval_every', 'clients_per_round'):
    config[key] = tiny_config()[key]
  config.data.update(dict(num_users=150, num_days=40, max_examples_per_user=32))
  config.dp.mechanism = 'gaussian_fixed'
  config.evaluation.personalization_steps = 3
  return config


@pytest.fixture(scope='module', params=['churn', 'next_action'])
def exported(request, tmp_path_factory):
  """(run dir, export dir, export.json, the run's data) of a tiny exported run."""
  base = tmp_path_factory.mktemp(request.param)
  workdir, output = str(base / 'run'), str(base / 'export')
  config = (tiny_config(**{'evaluation.personalization_steps': 3})
            if request.param == 'churn' else _next_action_config())
  training.train_and_evaluate(config, workdir)
  task = tasks.get(config.task)
  data = task.build_data(config)
  result = tflite.export_run(workdir, output, latency_repeats=5, data=data)
  return workdir, output, result, data


@pytest.mark.slow
def test_writes_every_artifact(exported):
  _, output, result, _ = exported
  for name in (tflite.FLOAT_MODEL, tflite.QUANTIZED_MODEL, tflite.PERSONALIZABLE_MODEL):
    assert os.path.getsize(os.path.join(output, name)) == result['bytes'][name] > 1000
  assert os.path.exists(os.path.join(output, tflite.SAVED_MODEL_DIR, 'saved_model.pb'))
  assert rundir.read_json(os.path.join(output, tflite.EXPORT_FILE)) == result
  card = open(os.path.join(output, tflite.MODEL_CARD_FILE)).read()
  statement = rundir.read_json(os.path.join(exported[0], rundir.PRIVACY_FILE))
  assert f"({statement['epsilon']:.3g}, {statement['delta']:g})-DP" in card
  assert tflite.FLOAT_MODEL in card and 'ms / example' in card


@pytest.mark.slow
def test_float_tflite_matches_keras_and_quantized_stays_within_the_margin(exported):
  workdir, output, result, data = exported
  parity = result['parity']
  assert parity[tflite.FLOAT_MODEL]['max_abs_probability_difference'] <= (
      tflite.FLOAT_PARITY_TOLERANCE)
  assert parity[tflite.PERSONALIZABLE_MODEL]['max_abs_probability_difference'] <= (
      tflite.FLOAT_PARITY_TOLERANCE)
  # Quantization changes the outputs, but loses at most the stated margin.
  assert parity[tflite.QUANTIZED_MODEL]['max_abs_probability_difference'] > 0
  for key, keras_value in parity['keras'].items():
    assert parity[tflite.QUANTIZED_MODEL][key] >= keras_value - (
        tflite.QUANTIZED_METRIC_MARGIN)
  # Independently: the exported model is the model the run evaluated last.
  config, task, keras_model, _ = tflite.load_run(workdir)
  last = rundir.read_metrics(os.path.join(workdir, rundir.METRICS_FILE))[-1]
  held_out = data.held_out(config.evaluation.max_users, seed=config.seed)
  logits = tflite.tflite_logits(
      open(os.path.join(output, tflite.FLOAT_MODEL), 'rb').read(), held_out.x)
  assert task.eval_metrics(logits, held_out.y)['loss'] == pytest.approx(
      float(last['eval_loss']), abs=1e-5)
  del config, keras_model


@pytest.mark.slow
def test_raw_events_through_the_spec_and_tflite_give_the_pipelines_scores(exported):
  workdir, output, _, data = exported
  spec = rundir.read_json(os.path.join(output, tflite.FEATURES_FILE))
  config, task, keras_model, _ = tflite.load_run(workdir)
  logs, origin, num_days, _ = clients.load_logs(config.data, seed=config.data.seed)
  by_id = {log.user_id: log for log in logs}
  model = open(os.path.join(output, tflite.FLOAT_MODEL), 'rb').read()
  held_out = data.held_out(config.evaluation.final_max_users, seed=config.seed)
  bounds = np.cumsum((0,) + held_out.sizes)
  checked = 0
  for user_id, a, b in zip(held_out.user_ids, bounds[:-1], bounds[1:]):
    if b == a:
      continue
    log = by_id[user_id]
    x, _ = tasks.get(spec['task']).examples_from_spec(spec, log.timestamps, log.events,
                                     origin_timestamp=origin, num_days=num_days)
    if task.name == 'next_action':  # the pipeline keeps the most recent examples
      x = x[-(b - a):]
    device = tflite.tflite_logits(model, x.astype(spec['input']['dtype']))
    pipeline = keras_model(held_out.x[a:b], training=False).numpy()
    np.testing.assert_allclose(device, pipeline, atol=1e-5)
    checked += 1
    if checked == 10:
      break
  assert checked == 10
  assert len(spec['event_vocabulary']) == 10 and spec['session_gap_seconds'] == 1800
  if task.name == 'churn':
    assert [f['name'] for f in spec['features']][-1] == 'log_events_per_session'
    assert spec['input']['shape'] == [None, 16]


@pytest.mark.slow
def test_personalization_in_the_interpreter_matches_python(exported):
  _, _, result, _ = exported
  p = result['personalization']
  assert p['users'] >= 5 and p['steps'] == 3
  assert p['max_abs_weight_difference'] <= 1e-5
  assert p['max_abs_logit_difference'] <= 1e-4
  assert p['max_abs_later_loss_difference'] <= 1e-5
  # The steps moved the weights far more than the two sides differ.
  assert p['max_abs_weight_change'] > 1e3 * max(p['max_abs_weight_difference'], 1e-9)
  for name in ('per_example_ms', 'per_user_ms'):
    assert result['latency'][tflite.FLOAT_MODEL][name] > 0
  assert result['latency'][tflite.PERSONALIZABLE_MODEL]['personalization_step_ms'] > 0


def test_unfinished_run_is_refused_naming_the_directory(tmp_path):
  with pytest.raises(tflite.ExportError, match='is not a run directory'):
    tflite.load_run(str(tmp_path))


@pytest.mark.slow
def test_unreadable_final_checkpoint_is_refused_not_replaced_by_an_earlier_one(
    exported, tmp_path):
  copy = str(tmp_path / 'run')
  shutil.copytree(exported[0], copy)
  final = rundir.checkpoint_path(copy, rundir.latest_checkpoint_round(copy))
  with open(final, 'r+b') as f:
    f.write(b'\0' * 64)
  with pytest.raises(tflite.ExportError,
                     match=r'not a finished run \(checkpoints/round_\d+\.npz changed'):
    tflite.load_run(copy)
  assert os.path.exists(final)  # left as it was


@pytest.mark.slow
def test_script_exports_a_run_and_refuses_a_directory_that_is_not_one(exported, tmp_path):
  workdir, _, _, _ = exported
  if 'next_action' in workdir:
    pytest.skip('the script is the same for both tasks')
  script = os.path.join(REPO, 'experiments', 'export_model.py')
  done = subprocess.run([sys.executable, script, f'--workdir={workdir}',
                         f'--output={tmp_path / "out"}', '--latency_repeats=1'],
                        capture_output=True, text=True, timeout=600, check=False)
  assert done.returncode == 0, done.stderr[-2000:]
  assert 'Exported round 2' in done.stdout
  assert os.path.exists(tmp_path / 'out' / tflite.EXPORT_FILE)
  refused = subprocess.run([sys.executable, script, f'--workdir={tmp_path / "none"}',
                            f'--output={tmp_path / "out2"}'],
                           capture_output=True, text=True, timeout=600, check=False)
  assert refused.returncode == 2 and 'is not a run directory' in refused.stderr
  assert not os.path.exists(tmp_path / 'out2')
