"""A shipped int8 model's weights back as float weights, to train on from there.

    python -m models.training.from_tflite \
        --model models/crowdsign_density_gray/crowdsign_density_gray.tflite \
        --arch m --data ../shared/data --npz OUT.npz

The .tflite is what the repository keeps of a trained model; the float
checkpoint it came from stays on the machine that trained it. Fine-tuning the
shipped model (on a site's own labelled frames, or a longer schedule on a
later GPU) therefore starts from the .tflite: each convolution's int8 kernel
and int32 bias are dequantized with their per-channel scales (TFLite folded
the BatchNorm into them at export), the last layer gets the training scale
(DENSITY_SCALE) and the export's bias correction back, and each BatchNorm is
set so that it passes the folded convolution's output through unchanged.

Unchanged in evaluation mode whatever the statistics are; with `--data`, the
BatchNorms also get the real per-channel mean and variance of their
convolution's output on whole training images, so a fine-tune that lets
BatchNorm normalise by batch statistics (no `--freeze-bn`) starts where the
shipped model is instead of from a rescaled network. The result is the .npz
train_torch writes (Keras layout, probe output included): `train_torch
--init` takes it, or takes the .tflite itself and converts it the same way.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from models.training import arch as A

# TFLite ops that carry a tensor from one named layer of the layer list to the next.
_CONV, _ADD, _RESIZE = "CONV_2D", "ADD", "RESIZE_BILINEAR"
_REQUANTIZE = ("QUANTIZE", "DEQUANTIZE")


def dequantized(interpreter, index: int) -> np.ndarray:
    """A constant tensor as float: (q - zero point) x scale, per channel where it is."""
    detail = next(t for t in interpreter.get_tensor_details() if t["index"] == index)
    q = interpreter.get_tensor(index)
    params = detail["quantization_parameters"]
    scales, zeros = params["scales"], params["zero_points"]
    if q.dtype in (np.float32, np.float16) or not len(scales):
        return q.astype(np.float32)
    shape = [1] * q.ndim
    if len(scales) > 1:
        shape[params["quantized_dimension"]] = -1
    return ((q.astype(np.float64) - zeros.reshape(shape)) * scales.reshape(shape)).astype(np.float32)


def folded_layers(model: Path, arch: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{layer name: (Keras-layout kernel, bias)} of every convolution of `arch`,
    found by walking the graph from the input along the layer list."""
    from crowdsign.counting.runtime import interpreter_class

    try:
        interpreter = interpreter_class()(model_path=str(model))
        interpreter.allocate_tensors()
    except ValueError as e:
        raise ValueError(f"{model}: not a TFLite model ({e})") from None
    ops = interpreter._get_ops_details()
    spec = A.layers_of(arch)
    names = {interpreter.get_input_details()[0]["index"]: A.INPUT}
    found: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def layer_for(kind, test, what: str):
        layer = next((l for l in spec if isinstance(l, kind) and test(l)), None)
        if layer is None:
            raise ValueError(f"{model}: {what}, which arch {arch!r} has not")
        return layer

    pending = list(ops)
    progressed = True
    while pending and progressed:
        progressed = False
        for op in list(pending):
            inputs = [int(i) for i in op["inputs"]]
            if not all(i in names for i in inputs[:1]):
                continue
            source = names[inputs[0]]
            if op["op_name"] in _REQUANTIZE:
                # the uint8 input's QUANTIZE to int8, or a requantization between layers
                name = source
            elif op["op_name"] == _CONV:
                layer = layer_for((A.Conv, A.Density), lambda l: l.source == source,
                                  f"a convolution reads {source!r}")
                kernel = dequantized(interpreter, inputs[1]).transpose(1, 2, 3, 0)  # -> h, w, in, out
                size, channels = getattr(layer, "kernel", 1), A.channels(arch)
                want = (size, size, channels[layer.source], channels[layer.name])
                if kernel.shape != want:
                    raise ValueError(f"{model}: layer {layer.name} has a {'x'.join(map(str, kernel.shape))} "
                                     f"kernel where arch {arch!r} has {'x'.join(map(str, want))}")
                found[layer.name] = (kernel, dequantized(interpreter, inputs[2]))
                name = layer.name
            elif op["op_name"] == _RESIZE:
                name = layer_for(A.Upsample, lambda l: l.source == source,
                                 f"an upsampling reads {source!r}").name
            elif op["op_name"] == _ADD and all(i in names for i in inputs):
                added = {names[i] for i in inputs}
                name = layer_for(A.Add, lambda l: set(l.sources) == added,
                                 f"an ADD of {' and '.join(sorted(added))}").name
            else:
                continue
            names[int(op["outputs"][0])] = name
            pending.remove(op)
            progressed = True
    wanted = [l.name for l in spec if isinstance(l, (A.Conv, A.Density))]
    missing = [n for n in wanted if n not in found]
    if missing:
        raise ValueError(f"{model}: not a model of arch {arch!r}: no convolution found for "
                         + ", ".join(missing))
    return found


def int8_mean_count(model: Path, images: np.ndarray) -> float:
    """Mean count of the int8 model itself over `images` (N x H x W x 1, 0..255)."""
    from crowdsign.counting.runtime import interpreter_class

    from models.training.export import interpreter_counts

    interpreter = interpreter_class()(model_path=str(model), num_threads=2)
    interpreter.allocate_tensors()
    return float(interpreter_counts(interpreter, images)[0].mean())


def keras_arrays(model: Path, arch: str, images: np.ndarray) -> dict[str, np.ndarray]:
    """Float weights in train_torch's layout (probe output excluded) for the int8
    model at `model`; whole training images (N x H x W x 1, 0..255) calibrate the
    BatchNorms and undo the export's bias correction."""
    import torch

    from models.training import torch_net as T

    folded = folded_layers(model, arch)
    last = A.layers_of(arch)[-1].name
    arrays: dict[str, np.ndarray] = {}
    for name, (kernel, bias) in folded.items():
        if name == last:  # the export divided the training scale out
            arrays[f"{name}/kernel"] = kernel * A.DENSITY_SCALE
            arrays[f"{name}/bias"] = bias * A.DENSITY_SCALE
            continue
        arrays[f"{name}/kernel"] = kernel
        c = len(bias)
        # Identity BatchNorm: y = 1 * (x - 0) / sqrt((1 - eps) + eps) + bias.
        arrays.update({f"{name}_bn/gamma": np.ones(c, np.float32), f"{name}_bn/beta": bias,
                       f"{name}_bn/moving_mean": np.zeros(c, np.float32),
                       f"{name}_bn/moving_variance": np.full(c, 1.0 - A.BN_EPSILON, np.float32)})

    net = T.DensityNet(arch)
    T.load_keras_arrays(net, arrays)
    net.eval()
    batches = [torch.from_numpy(np.ascontiguousarray(images[i:i + 8].transpose(0, 3, 1, 2))).float()
               for i in range(0, len(images), 8)]
    sums: dict[str, list] = {}
    hooks = [m.conv.register_forward_hook(
        lambda _m, _i, out, name=name: sums.setdefault(name, []).append(
            (out.double().sum((0, 2, 3)), out.double().square().sum((0, 2, 3)), out[:, 0].numel())))
        for name, m in net.convs.items() if isinstance(m, T.ConvBnRelu6)]
    with torch.no_grad():
        for x in batches:
            net(x)
    for h in hooks:
        h.remove()
    for name, parts in sums.items():
        n = sum(p[2] for p in parts)
        mean = (sum(p[0] for p in parts) / n).numpy()
        var = np.maximum((sum(p[1] for p in parts) / n).numpy() - mean ** 2, 1e-6)
        # gamma * (x - mean) / std + beta == x + bias: the same function, real statistics.
        arrays[f"{name}_bn/gamma"] = np.sqrt(var).astype(np.float32)
        arrays[f"{name}_bn/beta"] = (arrays[f"{name}_bn/beta"] + mean).astype(np.float32)
        arrays[f"{name}_bn/moving_mean"] = mean.astype(np.float32)
        arrays[f"{name}_bn/moving_variance"] = np.maximum(var - A.BN_EPSILON, 0).astype(np.float32)

    # The export raised the int8 model's last bias until its mean count met the float
    # model's; in float that shift adds to every cell. Lower the bias until the float
    # mean count meets the int8 model's again (secant steps; the response is near linear).
    target = int8_mean_count(model, images)
    bias = torch.from_numpy(arrays[f"{last}/bias"].copy())
    density = net.convs[last]

    def excess(shift: float) -> float:
        with torch.no_grad():
            density.bias.copy_(bias - shift)
            return float(torch.cat([torch.relu(net(x)).sum((1, 2, 3)) for x in batches]).mean()
                         / A.DENSITY_SCALE) - target

    tried = [(0.0, excess(0.0))]
    shift = 0.1 * A.DENSITY_SCALE * 1e-3 if tried[0][1] > 0 else 0.0
    for _ in range(6 if tried[0][1] > 0.01 else 0):
        tried.append((shift, excess(shift)))
        (s0, e0), (s1, e1) = tried[-2], tried[-1]
        if abs(e1) < 0.01 or e1 == e0:
            break
        shift = s1 - e1 * (s1 - s0) / (e1 - e0)
    shift = min(tried, key=lambda t: abs(t[1]))[0]
    arrays[f"{last}/bias"] = (bias - shift).numpy()
    return arrays


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, required=True, help="the int8 .tflite")
    p.add_argument("--arch", required=True, choices=tuple(A.ARCHS))
    p.add_argument("--npz", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True,
                   help="the training data (whole training images calibrate the conversion)")
    args = p.parse_args(argv)

    from models.training import torch_net as T
    from models.training.export import calibration_images
    from models.training.train_torch import save_npz

    images = calibration_images(args.data, seed=1234)
    try:
        arrays = keras_arrays(args.model, args.arch, images)
    except (ValueError, OSError) as e:
        raise SystemExit(f"from_tflite: {e}") from None
    net = T.DensityNet(args.arch)
    T.load_keras_arrays(net, arrays)
    save_npz(net, args.npz)
    print(f"{args.model} -> {args.npz}: {len(arrays)} arrays, calibrated on {len(images)} "
          "training images")


if __name__ == "__main__":
    main()
