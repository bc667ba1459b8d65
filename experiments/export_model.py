r"""Exports the final model of a run for the device: TFLite, SavedModel, spec, card.

  .venv/bin/python experiments/export_model.py --workdir=RUN --output=DIR

Writes DIR/model.tflite (float32), DIR/model_int8.tflite (quantized),
DIR/model_personalizable.tflite (with the on-device `train` signature), DIR/saved_model/,
DIR/features.json, DIR/model_card.md and DIR/export.json (parity with Keras on the
run's held-out users, sizes, latency); see `fl_analytics.export.tflite`.
"""

from absl import flags
# TensorFlow must be imported before absl's app.run starts main(): imported inside it,
# tf.keras.Input returns graph tensors and Keras functional models fail to build.
import tensorflow as tf  # pylint: disable=unused-import

from fl_analytics.core import cli
from fl_analytics.export import tflite
from fl_analytics.core import rundir

_WORKDIR = flags.DEFINE_string('workdir', None, 'A finished run directory (train.py).')
_OUTPUT = flags.DEFINE_string('output', None, 'Where to write the exported model.')
_REPEATS = flags.DEFINE_integer('latency_repeats', 200,
                                'Calls per latency median.', lower_bound=1)
flags.mark_flags_as_required(['workdir', 'output'])


def main(argv):
  del argv  # cli.parse_flags refuses positional arguments
  result = tflite.export_run(_WORKDIR.value, _OUTPUT.value, latency_repeats=_REPEATS.value)
  print(tflite.main_summary(result))


if __name__ == '__main__':
  cli.run(main, known=(tflite.ExportError, rundir.RunDirectoryError),
          log_dir=lambda: _OUTPUT.value)
