"""Training, quantization and evaluation of crowdsign's density model.

Only `density` is imported by the tests and needs nothing beyond numpy; the
rest needs the `train` extra (TensorFlow), except `evaluate`, which runs the
shipped .tflite through the daemon's own counting code.
"""
