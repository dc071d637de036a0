"""The network in Keras, built from its layer list (arch.py), for export to TFLite.

The layer names are the list's (a convolution's BatchNorm `<name>_bn`, its
ReLU6 `<name>_relu6` or unbounded ReLU `<name>_relu`), which is how weights
trained by torch_net.py find their layers (`load_npz`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import keras
import numpy as np
from keras import layers

from models.training import arch as A
from models.training.arch import DENSITY_SCALE  # noqa: F401  (re-exported for callers)
from models.training.data import probe_image

ARCHS = tuple(A.ARCHS)



def build(height=None, width=None, batch=None, relu=True, arch="s") -> keras.Model:
    """The model; None sizes make it fully convolutional for training on patches.

    relu=False leaves the output linear, for training: a ReLU output unit that
    a large step pushes below zero everywhere gets no gradient again (the model
    then predicts 0 for ever). Training penalises negative outputs instead, and
    the exported model ends in the ReLU (same weights).
    """
    spec = A.layers_of(arch)
    tensors = {A.INPUT: keras.Input((height, width, 1), batch_size=batch, name=A.INPUT)}
    for layer in spec:
        if isinstance(layer, A.Conv):
            x = layers.Conv2D(layer.filters, layer.kernel, strides=layer.stride, padding="same",
                              use_bias=False, name=layer.name)(tensors[layer.source])
            x = layers.BatchNormalization(momentum=A.BN_MOMENTUM, epsilon=A.BN_EPSILON,
                                          name=f"{layer.name}_bn")(x)
            relu = "_relu" if layer.cap is None else "_relu6"
            x = layers.ReLU(layer.cap, name=layer.name + relu)(x)
        elif isinstance(layer, A.Upsample):
            x = layers.UpSampling2D(2, interpolation="bilinear", name=layer.name)(tensors[layer.source])
        elif isinstance(layer, A.Add):
            x = layers.Add(name=layer.name)([tensors[s] for s in layer.sources])
        else:
            x = layers.Conv2D(1, 1, name=layer.name)(tensors[layer.source])
        tensors[layer.name] = x
    out = tensors[spec[-1].name]
    if relu:
        out = layers.ReLU(name="density_relu")(out)
    return keras.Model(tensors[A.INPUT], out, name="crowdsign_density_gray")


def load_npz(model: keras.Model, path: Path) -> None:
    """Set the weights from an .npz of arrays named `<layer>/<weight>` in Keras'
    layout (torch_net.keras_arrays writes them); every weight must be there."""
    arrays = np.load(path)
    missing = []
    for layer in model.layers:
        if not layer.weights:
            continue
        names = [w.path.split("/")[-1] for w in layer.weights]
        keys = [f"{layer.name}/{n}" for n in names]
        missing += [k for k in keys if k not in arrays]
        if not missing:
            layer.set_weights([arrays[k] for k in keys])
    if missing:
        raise ValueError(f"{path}: no weights for {', '.join(missing[:5])}"
                         + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
    if "probe/output" in arrays:
        check_probe(model, arrays["probe/output"], path)


def check_probe(model: keras.Model, expected: np.ndarray, path: Path) -> None:
    """The model must give what the trainer's network gave on the probe image
    (data.probe_image): same graph, same weights, same layout."""
    probe = probe_image()  # the trainer's probe is always at the default size
    if model.input_shape[1:3] not in ((None, None), probe.shape[1:3]):
        return
    got = model(probe, training=False).numpy()
    if model.layers[-1].name == "density_relu":
        expected = np.maximum(expected, 0)
    worst = float(np.abs(got - expected).max())
    if worst > 1e-3 * max(1.0, float(np.abs(expected).max())):
        raise ValueError(f"{path}: the weights do not reproduce the trainer's output on the probe "
                         f"image (largest difference {worst:.4g}): a layer differs between "
                         "torch_net.py and net.py")


def save_npz(model: keras.Model, path: Path) -> None:
    """Every weight as `<layer>/<weight>` (Keras layout): train_torch --init reads it."""
    np.savez(path, **{w.path: np.asarray(w.numpy()) for w in model.weights})


def load(model: keras.Model, path: Path) -> None:
    """Weights from train_torch's .npz or a Keras checkpoint (.weights.h5)."""
    if Path(path).suffix == ".npz":
        load_npz(model, path)
    else:
        model.load_weights(path)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Keras weights (.weights.h5) -> .npz for train_torch --init")
    p.add_argument("--weights", type=Path, required=True)
    p.add_argument("--arch", required=True, choices=ARCHS)
    p.add_argument("--npz", type=Path, required=True)
    args = p.parse_args(argv)
    model = build(relu=False, arch=args.arch)
    model.load_weights(args.weights)
    save_npz(model, args.npz)
    print(f"{args.weights} -> {args.npz}")


if __name__ == "__main__":
    main()
