"""A shipped int8 model's weights back as float weights, to train on from there.

    python -m models.training.from_tflite \
        --model models/crowdsign_density_gray/crowdsign_density_gray.tflite \
        --arch m+ --data ../shared/data --npz OUT.npz

The .tflite is what the repository keeps of a trained model; the float
checkpoint it came from stays on the machine that trained it. Fine-tuning the
shipped model (on a site's own labelled frames, or a longer schedule on a
later GPU) therefore starts from the .tflite: each convolution's int8 kernel
and int32 bias are dequantized with their per-channel scales (TFLite folded
the BatchNorm into them at export), the last layer gets the training scale
(DENSITY_SCALE) and the export's bias correction back, and each BatchNorm is
set so that it passes the folded convolution's output through unchanged.

Unchanged in evaluation mode whatever the statistics are; the BatchNorms also
get the per-channel mean and variance of their convolution's output over
batches of augmented training patches, as training computes them, so a
fine-tune that lets BatchNorm normalise by batch statistics (no `--freeze-bn`)
starts where the shipped model is instead of from a rescaled network. The
result is the .npz train_torch writes (Keras layout, probe output included):
`train_torch --init` takes it, or takes the .tflite itself and converts it the
same way.
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


class _Captured(Exception):
    """Stops a forward pass once the layer being calibrated has been seen."""


def training_patches(train: dict, seed: int, batches: int = 32, batch: int = 64,
                     empty_share: float | None = None) -> np.ndarray:
    """`batches` x `batch` augmented training patches (N x h x w x 1, 0..255), as
    train_torch draws them: what BatchNorm sees in training (from a stream of
    their own, not the training steps')."""
    from models.training import data as D

    share = D.EMPTY_SHARE if empty_share is None else empty_share
    return np.concatenate([D.PatchSampler(train, np.random.default_rng([seed, 1 << 40, k]),
                                          empty_share=share).batch(batch)[0]
                           for k in range(batches)])


def identity_batch_norm(name: str, bias: np.ndarray) -> dict[str, np.ndarray]:
    """The weights of layer `name`'s BatchNorm (Keras layout) as an identity
    that adds `bias`: y = 1 * (x - 0) / sqrt((1 - eps) + eps) + bias."""
    c = len(bias)
    return {f"{name}_bn/gamma": np.ones(c, np.float32), f"{name}_bn/beta": np.asarray(bias, np.float32),
            f"{name}_bn/moving_mean": np.zeros(c, np.float32),
            f"{name}_bn/moving_variance": np.full(c, 1.0 - A.BN_EPSILON, np.float32)}


def _batches_of(x: np.ndarray, size: int) -> list:
    import torch

    return [torch.from_numpy(np.ascontiguousarray(x[i:i + size].transpose(0, 3, 1, 2))).float()
            for i in range(0, len(x), size)]


def set_batch_statistics(net, patches: np.ndarray, batch: int = 64) -> None:
    """Give each BatchNorm of `net` (a torch_net.DensityNet whose BatchNorms are
    identities in evaluation mode: gamma 1, mean 0, variance 1 - eps) the
    statistics of training `patches` (N x h x w x 1, 0..255) in batches of
    `batch`, keeping the function `net` computes in evaluation mode.

    Layer by layer, in order: each BatchNorm gets the per-channel mean and
    (biased) variance of its convolution's output per batch in training mode,
    averaged over the batches, with the BatchNorms before it already set, so
    that the statistics are those of the batch-normalised network training
    runs, and its running statistics do not drift away from them as training
    starts."""
    import torch

    from models.training import torch_net as T

    data = _batches_of(patches, batch)
    norms = [(name, m) for name, m in net.convs.items() if isinstance(m, T.ConvBnRelu6)]
    for _, m in norms:
        m.bn.momentum = 0.0  # batch statistics normalise, running ones stay as set
    net.train()
    for name, m in norms:
        parts = []

        # The convolution's output is BatchNorm's input: ConvBnRelu6 may call
        # F.conv2d with the conv's weight rather than the conv module itself.
        def capture(_m, inputs):
            out = inputs[0]
            parts.append((out.double().mean((0, 2, 3)), out.double().var((0, 2, 3), unbiased=False)))
            raise _Captured  # the layers after this one are not needed yet

        hook = m.bn.register_forward_pre_hook(capture)
        with torch.no_grad():
            for x in data:
                try:
                    net(x)
                except _Captured:
                    pass
        hook.remove()
        mean = torch.stack([p[0] for p in parts]).mean(0).float()
        var = torch.stack([p[1] for p in parts]).mean(0).float().clamp(min=1e-6)
        # gamma * (x - mean) / std + beta == x + bias: the same function, real statistics.
        with torch.no_grad():
            m.bn.weight.copy_(var.sqrt())
            m.bn.bias.add_(mean)
            m.bn.running_mean.copy_(mean)
            m.bn.running_var.copy_((var - A.BN_EPSILON).clamp(min=0))
    for _, m in norms:
        m.bn.momentum = 1.0 - A.BN_MOMENTUM
    net.eval()


def keras_arrays(model: Path, arch: str, images: np.ndarray,
                 patches: np.ndarray, batch: int = 64) -> dict[str, np.ndarray]:
    """Float weights in train_torch's layout (probe output excluded) for the int8
    model at `model`. Whole training images (N x H x W x 1, 0..255) undo the
    export's bias correction; the BatchNorms take the statistics of training
    `patches` (training_patches) in batches of `batch`.

    Why patches: in training, BatchNorm normalises each batch of augmented
    patches by that batch's own statistics, and the shipped network learnt its
    folded weights under those. Statistics of clean whole images differ (v6's
    recovered with them counts Mall -5.0 and ShanghaiTech B -8.3 people low in
    training mode), so a fine-tune would spend its first steps undoing the
    rescaling rather than learning."""
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
        arrays.update(identity_batch_norm(name, bias))

    net = T.DensityNet(arch)
    T.load_keras_arrays(net, arrays)

    set_batch_statistics(net, patches, batch)

    # The export raised the int8 model's last bias until its mean count met the float
    # model's; in float that shift adds to every cell. Lower the bias until the float
    # mean count meets the int8 model's again (secant steps; the response is near linear).
    target = int8_mean_count(model, images)
    batches = _batches_of(images, 8)
    density = net.convs[last]
    bias = density.bias.detach().clone()

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
    with torch.no_grad():
        density.bias.copy_(bias - shift)
    return T.keras_arrays(net)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, required=True, help="the int8 .tflite")
    p.add_argument("--arch", required=True, choices=tuple(A.ARCHS))
    p.add_argument("--npz", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True,
                   help="the training data (whole training images calibrate the conversion)")
    p.add_argument("--datasets", nargs="+", default=None,
                   help="the datasets the fine-tune will train on (their patches set the "
                        "BatchNorm statistics; default: train_torch's)")
    args = p.parse_args(argv)

    from models.training import data as D
    from models.training import torch_net as T
    from models.training.export import calibration_images
    from models.training.train_torch import save_npz

    images = calibration_images(args.data, seed=1234)
    train, _ = D.load_split(args.data, args.datasets or D.DATASETS)
    try:
        arrays = keras_arrays(args.model, args.arch, images, training_patches(train, seed=1234))
    except (ValueError, OSError) as e:
        raise SystemExit(f"from_tflite: {e}") from None
    net = T.DensityNet(args.arch)
    T.load_keras_arrays(net, arrays)
    save_npz(net, args.npz)
    print(f"{args.model} -> {args.npz}: {len(arrays)} arrays, calibrated on {len(images)} "
          "training images")


if __name__ == "__main__":
    main()
