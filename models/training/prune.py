"""Start a slimmer network ("m+half") from trained "m+" weights by keeping the
channels that carry the most.

    python -m models.training.prune --weights OUT/best.npz --to m+half \
        --data ../shared/data --out build/half-init.npz

Why: "m+half" (arch.py) is "m+" with fewer channels, cheap enough that a frame
and its mirror image together stay under the compute bar. Trained from
scratch on the CPU it starts far behind "m+" (model card, "Mirrored views");
started from a trained "m+" it keeps what that network learnt in the
channels it keeps, and a fine-tune only has to make up for the rest.

How: every channel of a tensor is scored by what it passes on, its mean
absolute activation over training patches times the L1 norm of the weights
that read it, summed over the convolutions that read it. Tensors joined by an
ADD (through an upsampling or not) share their channels, so they are scored
and cut together. Each layer keeps its best-scoring channels; from the first
cut layer on, each can then be refitted by least squares to compute what the
wider network computed at the channels it keeps (`--refit`; v8 and the recipe
cut without it). Last, every BatchNorm gets the statistics of the slimmer
network in training mode (from_tflite.set_batch_statistics), so a fine-tune
starts from the function the slimmer network computes.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from models.training import arch as A
from models.training.from_tflite import identity_batch_norm, set_batch_statistics, training_patches

SOURCE = "m+"
# Training patches the refit's least squares run on (after the 1,024 that score
# the channels): ~400,000 positions at 1/8, for at most 685 unknowns a layer.
FIT_PATCHES = 512


def channel_groups(arch: str) -> dict[str, str]:
    """Each tensor's group: tensors joined by an ADD or an upsampling must keep
    the same channels. Named by one member; the input and Density are alone."""
    parent: dict[str, str] = {}

    def root(name: str) -> str:
        while parent.setdefault(name, name) != name:
            name = parent[name]
        return name

    for layer in A.layers_of(arch):
        root(layer.name)
        if isinstance(layer, A.Upsample):
            parent[root(layer.name)] = root(layer.source)
        elif isinstance(layer, A.Add):
            for source in layer.sources:
                parent[root(source)] = root(layer.name)
    return {name: root(name) for name in [A.INPUT] + [l.name for l in A.layers_of(arch)]}


def mean_activity(net, patches: np.ndarray, batch: int = 64) -> dict[str, np.ndarray]:
    """Per tensor, the mean absolute value of each channel over `patches`, with
    `net` (torch_net.DensityNet) in evaluation mode."""
    import torch

    net.eval()
    sums: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for i in range(0, len(patches), batch):
            x = torch.from_numpy(np.ascontiguousarray(patches[i:i + batch].transpose(0, 3, 1, 2))).float()
            for name, value in net.tensors(x).items():
                part = value.abs().double().mean((0, 2, 3)) * len(value)
                sums[name] = sums[name] + part if name in sums else part
    return {name: (s / len(patches)).numpy() for name, s in sums.items()}


def channel_scores(arch: str, arrays, activity: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per channel group, each channel's score: over the convolutions that read
    a tensor of the group, mean |activation| x L1 norm of the weights reading it."""
    groups = channel_groups(arch)
    scores: dict[str, np.ndarray] = {}
    for layer in A.layers_of(arch):
        if not isinstance(layer, (A.Conv, A.Density)) or layer.source == A.INPUT:
            continue
        kernel = np.asarray(arrays[f"{layer.name}/kernel"])          # h, w, in, out
        reads = np.abs(kernel).sum((0, 1, 3)) * activity[layer.source]
        group = groups[layer.source]
        scores[group] = scores.get(group, 0.0) + reads
    return scores


def kept_channels(source: str, target: str, arrays, activity) -> dict[str, np.ndarray]:
    """Per tensor of `target`, the indices (ascending) of the `source` channels it keeps."""
    def graph(arch: str) -> list:
        return [replace(l, filters=0) if isinstance(l, A.Conv) else l for l in A.layers_of(arch)]

    if graph(source) != graph(target):
        raise ValueError(f"{target} is not {source} with fewer channels")
    groups = channel_groups(source)
    scores = channel_scores(source, arrays, activity)
    wanted, have = A.channels(target), A.channels(source)
    keep: dict[str, np.ndarray] = {}
    for name, group in groups.items():
        if wanted[name] > have[name]:
            raise ValueError(f"{target} is wider than {source} at {name}")
        if wanted[name] != wanted[group]:
            raise ValueError(f"{target} cuts {name} and {group} differently; they are added")
        keep[name] = (np.arange(have[name]) if wanted[name] == have[name]
                      else np.sort(np.argsort(-scores[group], kind="stable")[:wanted[name]]))
    return keep


def slimmed(source: str, target: str, arrays, keep: dict[str, np.ndarray],
            activity: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`target`'s weights (Keras layout) cut out of `source`'s, every BatchNorm
    folded into its convolution and left as an identity (from_tflite's form)."""
    out: dict[str, np.ndarray] = {}
    for layer in A.layers_of(target):
        if not isinstance(layer, (A.Conv, A.Density)):
            continue
        full = np.asarray(arrays[f"{layer.name}/kernel"])
        kernel = full[:, :, keep[layer.source]]
        # What the cut input channels added on average, moved into the bias.
        cut = np.setdiff1d(np.arange(full.shape[2]), keep[layer.source])
        lost = np.einsum("hwco,c->o", full[:, :, cut], activity[layer.source][cut])
        if isinstance(layer, A.Density):
            out[f"{layer.name}/kernel"] = kernel
            out[f"{layer.name}/bias"] = (np.asarray(arrays[f"{layer.name}/bias"]) + lost).astype(np.float32)
            continue
        k = keep[layer.name]
        bn = {w: np.asarray(arrays[f"{layer.name}_bn/{w}"])[k]
              for w in ("gamma", "beta", "moving_mean", "moving_variance")}
        scale = bn["gamma"] / np.sqrt(bn["moving_variance"] + A.BN_EPSILON)
        out[f"{layer.name}/kernel"] = (kernel[..., k] * scale).astype(np.float32)
        out.update(identity_batch_norm(layer.name, bn["beta"] + (lost[k] - bn["moving_mean"]) * scale))
    return out


def refit(wide, slim, keep: dict[str, np.ndarray], patches: np.ndarray, batch: int = 32,
          ridge: float = 1e-6) -> list[str]:
    """Refit `slim`'s layers to reproduce `wide`'s, in place, layer by layer;
    returns the names of the layers refitted.

    Why: keeping channels and moving the cut ones' means into the biases
    leaves each layer's output right on average only, and the errors grow
    layer by layer: v7 cut that way counts Mall 5.15 and ShanghaiTech B 85
    before any fine-tune (model card, "v8"). Here each convolution from the
    first cut one on is fitted by least squares on training `patches`
    (N x h x w x 1, 0..255): from what the slim network, with the layers
    before already refitted, gives it, to what `wide` computes before its
    activation at the channels kept (channel pruning by reconstruction, as in
    He et al., ICCV 2017, and ThiNet). Its kernel and bias get the solution,
    its BatchNorm becomes an identity (from_tflite's form; set_batch_statistics
    then gives it real statistics).

    `wide` and `slim` are torch_net.DensityNet of one graph (slim's channels
    are `keep`'s, per tensor); `ridge` x the mean of the normal equations'
    diagonal is added to that diagonal (not the bias's), so a channel that
    never fires on the patches gets no weight."""
    import torch
    import torch.nn.functional as F

    wide.eval()
    slim.eval()
    batches = [torch.from_numpy(np.ascontiguousarray(patches[i:i + batch].transpose(0, 3, 1, 2))).float()
               for i in range(0, len(patches), batch)]
    done: list[str] = []
    for layer in slim.spec:
        if not isinstance(layer, (A.Conv, A.Density)):
            continue
        wide_m, slim_m = wide.convs[layer.name], slim.convs[layer.name]
        conv = isinstance(layer, A.Conv)
        if not done and len(keep[layer.name]) == (wide_m.conv if conv else wide_m).out_channels:
            continue  # before the first cut, the two networks compute the same
        k, stride = (layer.kernel, layer.stride) if conv else (1, 1)
        xtx = xty = None
        with torch.no_grad():
            for x in batches:
                given = _padded(slim.tensors(x)[layer.source], k, stride)
                if conv:
                    wanted = wide_m.pre_activation(wide.tensors(x)[layer.source])
                    wanted = wanted[:, torch.from_numpy(keep[layer.name])]
                else:
                    wanted = wide.tensors(x)[layer.name]
                cols = F.unfold(given, k, stride=stride).double()                  # N, C*k*k, positions
                cols = torch.cat([cols, torch.ones_like(cols[:, :1])], 1).transpose(1, 2).flatten(0, 1)
                y = wanted.double().flatten(2).transpose(1, 2).flatten(0, 1)
                xtx = cols.T @ cols if xtx is None else xtx + cols.T @ cols
                xty = cols.T @ y if xty is None else xty + cols.T @ y
            diagonal = torch.zeros(len(xtx), dtype=xtx.dtype)
            diagonal[:-1] = ridge * xtx.diagonal()[:-1].mean()
            solution = torch.linalg.solve(xtx + torch.diag(diagonal), xty)     # C*k*k + 1, out
            kernel, bias = solution[:-1].T.float(), solution[-1].float()
            if conv:  # the BatchNorm as an identity that adds the bias
                slim_m.conv.weight.copy_(kernel.reshape(slim_m.conv.weight.shape))
                slim_m.bn.weight.fill_(1.0)
                slim_m.bn.bias.copy_(bias)
                slim_m.bn.running_mean.zero_()
                slim_m.bn.running_var.fill_(1.0 - A.BN_EPSILON)
            else:
                slim_m.weight.copy_(kernel.reshape(slim_m.weight.shape))
                slim_m.bias.copy_(bias)
        done.append(layer.name)
    return done


def _padded(x, kernel: int, stride: int):
    """`x` padded as TensorFlow's 'same' pads it for this convolution."""
    import torch.nn.functional as F

    top, bottom = A.same_padding(x.shape[-2], kernel, stride)
    left, right = A.same_padding(x.shape[-1], kernel, stride)
    return F.pad(x, (left, right, top, bottom))


def check_weights(arrays, arch: str) -> None:
    """Raise ValueError naming the first weight that `arch` does not have in this shape."""
    ch = A.channels(arch)
    for layer in A.layers_of(arch):
        if not isinstance(layer, (A.Conv, A.Density)):
            continue
        key = f"{layer.name}/kernel"
        k = layer.kernel if isinstance(layer, A.Conv) else 1
        want = (k, k, ch[layer.source], ch[layer.name])
        if key not in arrays:
            raise ValueError(f"no {key}")
        if tuple(np.shape(arrays[key])) != want:
            raise ValueError(f"{key} is {tuple(np.shape(arrays[key]))}, {arch} has {want}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", type=Path, required=True, help=f'"{SOURCE}" weights (.npz, train_torch)')
    p.add_argument("--to", required=True, choices=tuple(A.ARCHS), help="the slimmer architecture")
    p.add_argument("--data", type=Path, required=True, help="the training data (patches score channels)")
    p.add_argument("--out", type=Path, required=True, help="weights to write (.npz)")
    p.add_argument("--seed", type=int, default=1234, help="of the training patches")
    p.add_argument("--refit", action="store_true",
                   help="refit each layer from the first cut one on by least squares (a closer "
                        "start, not a better model after the recipe's fine-tune: model card, "
                        "\"A cut that refits each layer\")")
    args = p.parse_args(argv)

    from models.training import data as D
    from models.training import torch_net as T
    from models.training.train_torch import save_npz

    try:
        arrays = dict(np.load(args.weights))
        check_weights(arrays, SOURCE)
    except (OSError, ValueError) as e:
        raise SystemExit(f"prune: {args.weights}: not {SOURCE} weights ({e})") from None
    train, _ = D.load_split(args.data, D.DATASETS)
    patches = training_patches(train, seed=args.seed)
    wide = T.DensityNet(SOURCE)
    T.load_keras_arrays(wide, arrays)
    activity = mean_activity(wide, patches[:1024])
    try:
        keep = kept_channels(SOURCE, args.to, arrays, activity)
    except ValueError as e:
        raise SystemExit(f"prune: {args.to}: {e}") from None
    slim = T.DensityNet(args.to)
    T.load_keras_arrays(slim, slimmed(SOURCE, args.to, arrays, keep, activity))
    if args.refit:
        refit(wide, slim, keep, patches[1024:1024 + FIT_PATCHES])
    set_batch_statistics(slim, patches)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_npz(slim, args.out)
    print(f"{args.weights} ({SOURCE}, {A.macs(SOURCE, 512, 384) / 1e9:.3f} GMAC) -> {args.out} "
          f"({args.to}, {A.macs(args.to, 512, 384) / 1e9:.3f} GMAC)")


if __name__ == "__main__":
    main()
