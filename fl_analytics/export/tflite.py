"""Shipping a run's model to the device: TensorFlow Lite, with the numbers that back it.

`export_run(workdir, output)` reads the final global model of a finished run (its last
checkpoint) and writes into `output`:

* ``model.tflite``: float32 inference (`infer`: inputs `x`, outputs `logits` and
  `probabilities`), TFLite builtin ops only.
* ``model_int8.tflite``: the same with full-integer post-training quantization (int8
  weights and activations, float32 inputs and outputs; `tf.lite.Optimize.DEFAULT` with a
  representative dataset). Dynamic-range quantization would leave the churn model as it
  is: TFLite quantizes only tensors of 1024 elements or more, and its largest has 512.
  The activation ranges come from `QUANTIZATION_EXAMPLES` held-out examples: held-out
  users are outside the DP guarantee, and the model card says so; the training users'
  data is never used.
* ``model_personalizable.tflite``: `infer`, plus `train` (one SGD step of on-device
  personalization on a batch of the user's own examples, at `client.learning_rate`,
  the step `fl_analytics.runs.evaluation.personalize` measures) and `weights` (the current
  trainable weights). TFLite on-device training: resource variables, updated in the
  interpreter.
* ``saved_model/``: the same module as a SavedModel (signatures `infer`, `train`,
  `weights`), what the converter read.
* ``features.json``: the on-device featurization (`features_spec`): enough to compute
  the model's inputs from raw events without Python.
* ``model_card.md``: task, population, privacy statement, held-out metrics, size and
  latency.
* ``export.json``: what was measured. Parity on the run's held-out users: the largest
  absolute difference of probabilities between each TFLite model and Keras, and the
  task's headline and accuracy metrics of each; the personalization in the interpreter
  against the Python personalization (weights and held-out losses); bytes; latency in
  the TFLite interpreter on this CPU (median over repeats) per example, per user and
  per personalization step.

`--output` is a new or empty directory, or an earlier export, which is replaced whole;
never inside the run directory. The export is written to a temporary directory beside
it and renamed into place at the end, so an interrupted export leaves the earlier one
(or none), never half of one.

TensorFlow's own converter and interpreter (`tf.lite`), no other runtime. The weights
are the first leaves of the checkpoint: TFF's `LearningAlgorithmState` holds the global
model weights (trainable, then non-trainable) first (`tests/export_test.py` checks them
against the model the run evaluated).
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
import zipfile
from typing import Any, Optional

import ml_collections
import numpy as np

from fl_analytics.runs import evaluation
from fl_analytics.tasks import metrics
from fl_analytics.core import rundir
from fl_analytics import tasks
from fl_analytics.data import features
from fl_analytics.data import generators

EXPORT_FILE = 'export.json'
FEATURES_FILE = 'features.json'
MODEL_CARD_FILE = 'model_card.md'
FLOAT_MODEL = 'model.tflite'
QUANTIZED_MODEL = 'model_int8.tflite'
PERSONALIZABLE_MODEL = 'model_personalizable.tflite'
SAVED_MODEL_DIR = 'saved_model'
# Float32 TFLite must match Keras to this (largest absolute difference of
# probabilities); the quantized model may lose at most this much of the task's headline
# and accuracy metrics (`tests/export_test.py` holds both).
FLOAT_PARITY_TOLERANCE = 1e-5
QUANTIZED_METRIC_MARGIN = 0.02
# Held-out examples that set the int8 model's activation ranges.
QUANTIZATION_EXAMPLES = 500
# Users whose personalization is replayed in the interpreter (each a fresh interpreter).
PERSONALIZATION_USERS = 20


class ExportError(ValueError):
  """The run directory cannot be exported (not finished, files missing)."""


def load_run(workdir: str):
  """(config, task, keras model with the final global weights, round) of a run."""
  config_path = os.path.join(workdir, rundir.CONFIG_FILE)
  if not os.path.exists(config_path):
    raise ExportError(f'{config_path} is missing: {workdir} is not a run directory.')
  reasons = rundir.incomplete_reasons(workdir, rundir.read_json(config_path)['num_rounds'])
  if reasons:
    raise ExportError(f'{workdir} is not a finished run ({"; ".join(reasons)}); finish '
                      'it (run the same train.py command again) before exporting.')
  config = ml_collections.ConfigDict(rundir.read_json(config_path))
  try:  # a config.json edited by hand, or of another version, may not fit its task
    task = tasks.for_run(config.to_dict())
    keras_model = task.build_model(config)
  except (ValueError, KeyError, AttributeError) as e:
    raise ExportError(
        f'{config_path} does not describe a model of its task ({type(e).__name__}: '
        f'{str(e).strip(chr(34) + chr(39))}): it was edited or written by another '
        'version. Restore it from the run, or train the run again.') from e
  round_num = rundir.latest_checkpoint_round(workdir)
  try:  # exactly the final round's (no fallback to an earlier one, and no renaming)
    leaves = rundir.load_checkpoint(workdir, round_num)
  except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
    raise ExportError(f'{rundir.checkpoint_path(workdir, round_num)} cannot be read '
                      f'({type(e).__name__}: {e}); the final model cannot be exported. '
                      'Run the same train.py command again to redo that round.') from e
  weights = keras_model.get_weights()
  final = [np.asarray(leaf) for leaf in leaves[:len(weights)]]
  if [w.shape for w in final] != [w.shape for w in weights]:
    raise ExportError(
        f'The checkpoint of round {round_num} in {workdir} does not start with the '
        f'weights of the {task.name} model of its config.json '
        f'({[w.shape for w in weights]}); it cannot be exported.')
  keras_model.set_weights(final)
  return config, task, keras_model, round_num


def device_module(task, config, keras_model):
  """A `tf.Module` with the device's signatures: `infer`, `train`, `weights`."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  x_spec, y_spec = task.input_spec(config)
  loss_fn = task.loss()
  learning_rate = float(config.client.learning_rate)
  variables = keras_model.trainable_variables

  def outputs(logits):
    return {'logits': logits, 'probabilities': task.probabilities(logits)}

  def infer(x):
    return outputs(keras_model(x, training=False))

  def train(x, y):
    with tf.GradientTape() as tape:
      loss = loss_fn(y, keras_model(x, training=True))
    for v, g in zip(variables, tape.gradient(loss, variables)):
      v.assign_sub(learning_rate * tf.convert_to_tensor(g))  # as evaluation.personalize
    return {'loss': loss}

  def weights():
    return {f'w{i}': tf.identity(v) for i, v in enumerate(variables)}

  module = tf.Module()
  module.model = keras_model
  module.infer = tf.function(infer, input_signature=[x_spec])
  module.train = tf.function(train, input_signature=[x_spec, y_spec])
  module.weights = tf.function(weights, input_signature=[])
  return module


def _convert(saved_model_dir: str, signatures, *,
             representative: Optional[np.ndarray] = None, trainable: bool = False) -> bytes:
  """TFLite from the SavedModel's `signatures`; int8 with `representative` inputs."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir,
                                                       signature_keys=list(signatures))
  if representative is not None:
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x[None]] for x in representative)
  if trainable:
    # Training needs resource variables; gradients may need TF ops beyond the builtins.
    converter.experimental_enable_resource_variables = True
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS,
                                           tf.lite.OpsSet.SELECT_TF_OPS]
  return converter.convert()


def interpreter(model: bytes):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  return tf.lite.Interpreter(model_content=model)


def tflite_outputs(model: bytes, x: np.ndarray) -> dict[str, np.ndarray]:
  """The `infer` outputs (`logits`, `probabilities`) of a TFLite model on `x`."""
  return interpreter(model).get_signature_runner('infer')(x=x)


def tflite_logits(model: bytes, x: np.ndarray) -> np.ndarray:
  return tflite_outputs(model, x)['logits']


def features_spec(task, config) -> dict[str, Any]:
  """How the device computes the model's input from its raw events (`features.json`)."""
  data = config.data
  common = {
      'task': task.name,
      'event_vocabulary': list(generators.vocabulary(data)),
      'unknown_events': ('events whose name is not in event_vocabulary are dropped '
                         'before featurization' if data.unknown_events == 'drop' else
                         f'data.unknown_events={data.unknown_events}'),
      'session_gap_seconds': features.SESSION_GAP_SECONDS,
      'sessions': ('an event starts a session when it is the user\'s first event or '
                   'comes more than session_gap_seconds after the event before it'),
      'day': ('days are UTC calendar days; day d runs from origin + d * 86400 s, with '
              'origin a UTC midnight'),
  }
  return {**common, **task.device_features_spec(config)}


def _median_seconds(fn, repeats: int) -> float:
  fn()  # warm-up
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def personalization_parity(task, config, keras_model, model: bytes,
                           users, *, max_users: int = PERSONALIZATION_USERS
                           ) -> dict[str, Any]:
  """Personalization in the TFLite interpreter against `evaluation.personalize`.

  For the first `max_users` held-out users with enough examples: a fresh interpreter
  of the personalizable model, the same SGD steps on the same batches of the user's
  early examples (`evaluation.personalization_batches`), then its weights, its logits
  on the later examples and their loss against the Python personalization's.
  """
  steps = int(config.evaluation.personalization_steps) or 5
  kwargs = dict(steps=steps, learning_rate=float(config.client.learning_rate),
                batch_size=int(config.client.batch_size), seed=int(config.seed))
  chosen = [u for u in users if len(u[1]) >= 4][:max_users]
  global_weights = [v.numpy() for v in keras_model.trainable_variables]
  python = evaluation.personalize(task, keras_model, keras_model.get_weights(), chosen,
                                  keep_weights=True, **kwargs)
  max_weight_diff = max_logit_diff = max_loss_diff = max_change = 0.0
  for index, ((x, y), (y_later, _, python_logits, python_weights)) in enumerate(
      zip(chosen, python)):
    (x_early, y_early), (x_later, _) = evaluation.split_in_time(x, y)
    runner = interpreter(model)
    train = runner.get_signature_runner('train')
    for batch in evaluation.personalization_batches(
        len(y_early), steps=steps, batch_size=kwargs['batch_size'], seed=kwargs['seed'],
        index=index):
      train(x=x_early[batch], y=y_early[batch])
    device_weights = runner.get_signature_runner('weights')()
    device_logits = runner.get_signature_runner('infer')(x=x_later)['logits']
    for i, w in enumerate(python_weights):
      max_weight_diff = max(max_weight_diff,
                            float(np.max(np.abs(device_weights[f'w{i}'] - w))))
      max_change = max(max_change, float(np.max(np.abs(w - global_weights[i]))))
    max_logit_diff = max(max_logit_diff,
                         float(np.max(np.abs(device_logits - python_logits))))
    max_loss_diff = max(max_loss_diff, abs(
        float(metrics.loss_and_correct(device_logits, y_later)[0].mean())
        - float(metrics.loss_and_correct(python_logits, y_later)[0].mean())))
  return {'users': len(chosen), 'steps': steps,
          'learning_rate': kwargs['learning_rate'], 'batch_size': kwargs['batch_size'],
          'max_abs_weight_change': max_change,  # what personalization moved
          'max_abs_weight_difference': max_weight_diff,
          'max_abs_logit_difference': max_logit_diff,
          'max_abs_later_loss_difference': max_loss_diff}


def export_run(workdir: str, output: str, *, latency_repeats: int = 200,
               data=None) -> dict[str, Any]:
  """Exports the final model of run `workdir` into `output`; returns `export.json`.

  `data`: the run's `FederatedData` when the caller has it (rebuilt from the config
  otherwise: the held-out users are those of the run).
  """
  config, task, keras_model, round_num = load_run(workdir)
  check_output(output, workdir)
  final_output = output
  parent = os.path.dirname(os.path.abspath(output))
  os.makedirs(parent, exist_ok=True)
  output = tempfile.mkdtemp(dir=parent, prefix=f'.tmp-{os.path.basename(output)}-')
  try:
    result = _export(workdir, output, config, task, keras_model, round_num,
                     latency_repeats=latency_repeats, data=data)
    rundir.replace_directory(output, final_output)
  except BaseException:
    shutil.rmtree(output, ignore_errors=True)
    raise
  return result


def check_output(output: str, workdir: str) -> None:
  """ExportError unless `output` can take an export of run `workdir`: a new or empty
  directory, or an earlier export (it is replaced whole), outside the run directory."""
  rundir.check_writable_directory(output, flag='--output')
  out, run = os.path.realpath(output), os.path.realpath(workdir)
  if out == run or out.startswith(run + os.sep):
    raise ExportError(f'--output={output} is the run directory {workdir} or inside it; the '
                      f'export goes to a directory of its own (e.g. {workdir}-export).')
  if os.path.isdir(output) and os.listdir(output) and not os.path.isfile(
      os.path.join(output, EXPORT_FILE)):
    raise ExportError(
        f'--output={output} holds other files ({", ".join(sorted(os.listdir(output))[:3])}'
        '...) and no export.json: it is not an earlier export, which would be replaced. '
        'Use a new or empty directory.')


def _export(workdir, output, config, task, keras_model, round_num, *, latency_repeats,
            data) -> dict[str, Any]:
  """`export_run` into the (new, empty) directory `output`."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  if data is None:
    data = task.build_data(config)
  rundir.check_same_data(config.to_dict(), data.fingerprint,
                         os.path.join(workdir, rundir.CONFIG_FILE),
                         risk='the export would be checked on other held-out users')
  # The held-out users of the run's final evaluation (evaluation.final_max_users).
  held_out = data.held_out(config.evaluation.final_max_users, seed=int(config.seed))
  module = device_module(task, config, keras_model)
  models = _convert_models(module, config, held_out, output)
  users = held_out.users
  typical = users[int(np.argsort([len(u[1]) for u in users])[len(users) // 2])]
  batch = int(config.client.batch_size)
  result = {
      'run': workdir,
      'round': round_num,
      'task': task.name,
      'tensorflow': tf.__version__,
      'bytes': {name: len(content) for name, content in models.items()},
      'parity': _parity(task, module, models, held_out),
      'personalization': personalization_parity(
          task, config, keras_model, models[PERSONALIZABLE_MODEL], users),
      'latency': {'repeats': latency_repeats, 'examples_per_user': len(typical[1]),
                  'personalization_batch': batch,
                  **_latency(models, held_out, typical, batch, latency_repeats)},
      'tolerances': {'float_parity': FLOAT_PARITY_TOLERANCE,
                     'quantized_metric_margin': QUANTIZED_METRIC_MARGIN},
  }
  spec = features_spec(task, config)
  rundir.write_json(os.path.join(output, FEATURES_FILE), spec)
  rundir.atomic_write_bytes(os.path.join(output, MODEL_CARD_FILE),
                            model_card(workdir, config, task, result).encode())
  rundir.write_json(os.path.join(output, EXPORT_FILE), result)  # last: complete
  return result


def _convert_models(module, config, held_out, output: str) -> dict[str, bytes]:
  """The SavedModel of `module`, then its three TFLite models, written to `output`."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  saved_dir = os.path.join(output, SAVED_MODEL_DIR)
  tf.saved_model.save(module, saved_dir, signatures={
      'infer': module.infer.get_concrete_function(),
      'train': module.train.get_concrete_function(),
      'weights': module.weights.get_concrete_function()})
  chosen = np.random.default_rng([int(config.seed), 0x18]).permutation(
      len(held_out.y))[:QUANTIZATION_EXAMPLES]
  models = {
      FLOAT_MODEL: _convert(saved_dir, ['infer']),
      QUANTIZED_MODEL: _convert(saved_dir, ['infer'],
                                representative=held_out.x[np.sort(chosen)]),
      PERSONALIZABLE_MODEL: _convert(saved_dir, ['infer', 'train', 'weights'],
                                     trainable=True),
  }
  for name, content in models.items():
    rundir.atomic_write_bytes(os.path.join(output, name), content)
  return models


def _parity(task, module, models: dict[str, bytes], held_out) -> dict[str, Any]:
  """Every model against Keras on every example of the held-out users: the largest
  probability difference, and the headline and accuracy metrics."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  x, y = held_out.x, held_out.y
  # Keras through the same `infer` (probabilities included) that was converted.
  keras = {k: v.numpy() for k, v in module.infer(tf.constant(x)).items()}
  metric_keys = {m.column[len('eval_'):] for m in (task.headline, task.accuracy)}
  keras_metrics = task.eval_metrics(keras['logits'], y)
  parity = {'examples': len(y), 'users': len(held_out.users),
            'keras': {k: keras_metrics[k] for k in sorted(metric_keys)}}
  for name, content in models.items():
    out = tflite_outputs(content, x)
    got = task.eval_metrics(out['logits'], y)
    parity[name] = {
        'max_abs_probability_difference': float(np.max(np.abs(
            out['probabilities'] - keras['probabilities']))),
        **{k: got[k] for k in sorted(metric_keys)},
    }
  return parity


def _latency(models, held_out, typical, batch: int, repeats: int) -> dict[str, Any]:
  """Latency in the interpreter: one example, one user's examples, one SGD step."""
  x, y = held_out.x, held_out.y
  latency = {}
  for name, content in models.items():
    infer = interpreter(content).get_signature_runner('infer')
    latency[name] = {
        'per_example_ms': 1e3 * _median_seconds(lambda: infer(x=x[:1]), repeats),
        'per_user_ms': 1e3 * _median_seconds(lambda: infer(x=typical[0]), repeats),
    }
  train = interpreter(models[PERSONALIZABLE_MODEL]).get_signature_runner('train')
  latency[PERSONALIZABLE_MODEL]['personalization_step_ms'] = 1e3 * _median_seconds(
      lambda: train(x=x[:batch], y=y[:batch]), max(10, repeats // 4))
  return latency


def model_card(workdir: str, config, task, result: dict) -> str:
  """`model_card.md`: what the model is, who it learned from, at what privacy cost,
  how well it does and what it costs on the device."""
  statement = rundir.read_json(os.path.join(workdir, rundir.PRIVACY_FILE))
  evaluation_file = os.path.join(workdir, rundir.EVALUATION_FILE)
  ev = rundir.read_json(evaluation_file) if os.path.exists(evaluation_file) else {}
  parity, latency = result['parity'], result['latency']
  eps = statement.get('epsilon')
  privacy_line = (
      f"({eps:.3g}, {statement['delta']:g})-DP for {statement['unit_of_privacy']}, "
      f"{statement['mechanism']} mechanism, {statement['accountant'].upper()} "
      f"accountant, neighbouring datasets: {statement['neighboring_relation']}"
      if eps is not None else 'none: a non-private reference run')
  caveat = (' Simulation only: ' + '; '.join(statement.get('simulation_caveats', []))
            + '.' if statement.get('simulation_only') else '')
  metrics_rows = '\n'.join(
      f"| {name} | {result['bytes'][name] / 1024:.1f} KiB | "
      + ' | '.join(f"{parity[name][m.column[len('eval_'):]]:.4f}"
                   for m in (task.headline, task.accuracy))
      + f" | {parity[name]['max_abs_probability_difference']:.2g} | "
      f"{latency[name]['per_example_ms']:.3f} | {latency[name]['per_user_ms']:.3f} |"
      for name in (FLOAT_MODEL, QUANTIZED_MODEL, PERSONALIZABLE_MODEL))
  pers = ev.get('personalization')
  return f"""# Model card: {task.title.lower()}

- **Task**: {task.title} ({task.name}). Inputs and outputs: `features.json`.
- **Trained**: federated averaging over {config.resolved.population_size} users' devices
  for {result['round']} rounds, {config.clients_per_round} users per round
  ({config.sampling} sampling); run `{result['run']}`.
- **Population**: {config.data.source if config.data.source != 'synthetic' else
                  f"{config.data.num_users} synthetic app users"}; held-out users
  (never trained on): {parity['users']}, {parity['examples']} examples.
- **Privacy**: {privacy_line}.{caveat} Held-out users (evaluation, and the activation
  ranges of `{QUANTIZED_MODEL}`: {QUANTIZATION_EXAMPLES} of their examples) are outside the
  guarantee.
- **On-device personalization**: `{PERSONALIZABLE_MODEL}`, signature `train` (one SGD
  step at learning rate {config.client.learning_rate:g} on a batch of the user's own
  examples). {f"In evaluation, {pers['steps']} steps on each held-out user's early days "
             f"change the {task.headline.name} of their later days from "
             f"{pers['global'][task.headline.column[len('eval_'):]]:.4f} to "
             f"{pers['personalized'][task.headline.column[len('eval_'):]]:.4f}."
             if pers else ''}

## Held-out metrics, size and latency

Latency: median of {latency['repeats']} calls in the TensorFlow Lite interpreter
(TensorFlow {result['tensorflow']}) on the exporting machine; a user is
{latency['examples_per_user']} examples. One personalization step (a batch of
{latency['personalization_batch']}): {latency[PERSONALIZABLE_MODEL]['personalization_step_ms']:.3f} ms.

| model | size | {task.headline.label} | {task.accuracy.label} | max abs. prob. diff. to Keras | ms / example | ms / user |
|---|---|---|---|---|---|---|
| Keras (reference) | | {' | '.join(f"{parity['keras'][m.column[len('eval_'):]]:.4f}" for m in (task.headline, task.accuracy))} | 0 | | |
{metrics_rows}
"""


def main_summary(result: dict) -> str:
  """A few lines for the export script."""
  parity = result['parity']
  return '\n'.join(
      [f"Exported round {result['round']} of {result['run']} ({result['task']})."] +
      [f"  {name}: {result['bytes'][name]} bytes, max |p - p_keras| = "
       f"{parity[name]['max_abs_probability_difference']:.2g}, "
       f"{result['latency'][name]['per_example_ms']:.3f} ms/example"
       for name in result['bytes']] +
      [f"  personalization in the interpreter: {result['personalization']['users']} "
       f"users, max |w - w_python| = "
       f"{result['personalization']['max_abs_weight_difference']:.2g}"])

