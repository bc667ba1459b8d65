"""Layer 7, shipping a finished run's model to the device with TensorFlow Lite (`tflite`)."""
