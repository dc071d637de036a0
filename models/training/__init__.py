"""Training, quantization and evaluation of crowdsign's density model.

`arch` (the network as data) and `density` need nothing beyond the standard
library and numpy and are imported by the tests. Training (`train_torch`,
`torch_net`) needs the `train-torch` extra (PyTorch), the export (`net`,
`export`) the `train` extra (TensorFlow); `evaluate` runs the shipped .tflite
through the daemon's own counting code.
"""
