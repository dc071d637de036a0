"""The density network as data: one layer list per size, no framework imported.

Keras builds it for export to TFLite (net.py), PyTorch builds the same graph
for training on a GPU (torch_net.py); both read these lists, so the network is
written once and weights move between the two by layer name.

Gray image (raw pixel values 0..255, one channel) in, density map at 1/8
resolution out. Plain 3x3 convolutions (XNNPACK's fastest int8 kernel; the
channel counts are small enough that depthwise-separable blocks would save
little and train slower on CPU), each followed by BatchNorm (folded at export)
and ReLU6; the last 1x1 convolution is linear in training and gets a ReLU at
export (a density is >= 0 and unbounded).

    stem     3x3/2 1->16, 3x3/2 16->24, 3x3 24->24            (1/4)
    stage8   3x3/2 24->48, 3x3 48->48                          (1/8)
    stage16  3x3/2 48->96, 3x3 96->96, 3x3 96->96, 1x1 96->48  (1/16, context)
    fuse     bilinear x2 upsample of stage16, ADD to stage8   (scale aggregation)
    head     3x3 48->48, 3x3 48->32, 1x1 32->1

That is "s"; "m" widens the 1/8 and 1/16 stages to 64 and 128 channels and adds
a 1/32 stage (~300 px of context per cell, for dense street crowds) fused into
the 1/16 one the same way; "l" (0.98 GMAC, not yet shipped) widens the 1/4
stem to 32 channels and adds a third 1/8 convolution; "m+" and "l+" are those
two with the last hidden layer's ReLU unbounded (`_open_head`; the Bayesian
loss needs it, see `torch_net.DensityNet.cell_ceiling`). The 1/16 branch sees
~120 px of context, enough for a whole person at the deployed scale, while the
1/8 path keeps the heads' positions; adding (not concatenating) them keeps int8 requantization to one
ADD. Keras' nearest upsampling and dilated convolutions do not survive
conversion as single TFLite ops (they become TILE/RESHAPE and SPACE_TO_BATCH
chains), so the model uses bilinear upsampling (RESIZE_BILINEAR) and plain
convolutions only.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

# Training targets are density x DENSITY_SCALE (values of order 1-100 for the
# optimiser); the exported model divides it back out of its last convolution,
# so the shipped model outputs people per cell.
DENSITY_SCALE = 100.0
# BatchNorm settings, Keras' convention (moving = momentum * moving + (1 - momentum) * batch).
BN_MOMENTUM = 0.95
BN_EPSILON = 1e-3
INPUT = "gray"


@dataclass(frozen=True)
class Conv:
    """Convolution (no bias), BatchNorm named `<name>_bn`, ReLU6; 'same' padding.

    cap: the ReLU's upper bound, 6 (ReLU6: a fixed int8 range) or None (plain
    ReLU, unbounded)."""
    name: str
    source: str
    filters: int
    kernel: int = 3
    stride: int = 1
    cap: float | None = 6.0


@dataclass(frozen=True)
class Upsample:
    """Bilinear x2 upsampling."""
    name: str
    source: str


@dataclass(frozen=True)
class Add:
    name: str
    sources: tuple[str, str]


@dataclass(frozen=True)
class Density:
    """The output: a 1x1 convolution with bias to one channel, linear."""
    name: str
    source: str


Layer = Conv | Upsample | Add | Density

_STEM = [Conv("stem1", INPUT, 16, stride=2), Conv("stem2", "stem1", 24, stride=2),
         Conv("stem3", "stem2", 24)]


def _context_and_head(s8: str) -> list[Layer]:
    """The 1/16 and 1/32 context stages of "m" and "l", fused back into their
    1/8 tensor `s8`, and the head."""
    return [
        Conv("s16a", s8, 128, stride=2), Conv("s16b", "s16a", 128),
        Conv("s32a", "s16b", 128, stride=2), Conv("s32b", "s32a", 128),
        Conv("s32d", "s32b", 128, kernel=1),
        Upsample("up32", "s32d"), Add("fuse16", ("s16b", "up32")),
        Conv("s16c", "fuse16", 128), Conv("s16d", "s16c", 64, kernel=1),
        Upsample("up", "s16d"), Add("fuse", (s8, "up")),
        Conv("head1", "fuse", 64), Conv("head2", "head1", 32), Density("density", "head2"),
    ]


def _open_head(layers: list[Layer]) -> list[Layer]:
    """`layers` with the last hidden layer's ReLU unbounded.

    The density is a weighted sum of that layer's 32 channels, so with ReLU6
    a cell can hold no more than 6 x (the sum of the positive weights) + bias
    people: v6 tops out at 2.80 people a cell (at 512x384, 8x8 pixels), while 13
    of the 80 ShanghaiTech B validation images have target cells above that
    (156 people in all above it, up to 10.3 a cell in training images), and
    those dense images are the ones v6 undercounts (-10 over 200 people)."""
    last_hidden = [l for l in layers if isinstance(l, Conv)][-1]
    return [replace(l, cap=None) if l is last_hidden else l for l in layers]


_M = _STEM + [Conv("s8a", "stem3", 64, stride=2), Conv("s8b", "s8a", 64)] + _context_and_head("s8b")
_L = ([Conv("stem1", INPUT, 16, stride=2), Conv("stem2", "stem1", 32, stride=2),
       Conv("stem3", "stem2", 32),
       Conv("s8a", "stem3", 64, stride=2), Conv("s8b", "s8a", 64), Conv("s8c", "s8b", 64)]
      + _context_and_head("s8c"))


def _slim_context(layers: list[Layer], context: int, head1: int,
                  s8: int | None = None) -> list[Layer]:
    """`layers` with the 1/16 and 1/32 stages `context` channels wide and the
    first head convolution `head1` wide: the same graph, cheap enough to run
    a larger input under the compute bar. The 1/8 path, where heads are
    found, keeps its width unless `s8` narrows it (with the 1/16 output that
    is added to it)."""
    def slim(layer: Layer) -> Layer:
        if isinstance(layer, Conv) and layer.name in ("s16a", "s16b", "s32a", "s32b", "s32d", "s16c"):
            return replace(layer, filters=context)
        if isinstance(layer, Conv) and layer.name == "head1":
            return replace(layer, filters=head1)
        if s8 is not None and isinstance(layer, Conv) and layer.name in ("s8a", "s8b", "s16d"):
            return replace(layer, filters=s8)
        return layer
    return [slim(l) for l in layers]


ARCHS: dict[str, list[Layer]] = {
    # The first shipped model: 0.48 GMAC at 512x384.
    "s": _STEM + [
        Conv("s8a", "stem3", 48, stride=2), Conv("s8b", "s8a", 48),
        Conv("s16a", "s8b", 96, stride=2), Conv("s16b", "s16a", 96), Conv("s16c", "s16b", 96),
        Conv("s16d", "s16c", 48, kernel=1),
        Upsample("up", "s16d"), Add("fuse", ("s8b", "up")),
        Conv("head1", "fuse", 48), Conv("head2", "head1", 32), Density("density", "head2"),
    ],
    # 0.79 GMAC at 512x384: v6, the shipped model before v7 ("m+").
    "m": _M,
    # 0.98 GMAC at 512x384: "m" with a wider 1/4 stem (32 channels) and a third
    # 1/8 convolution, where ShanghaiTech B's heads (5-10 px at the deployed
    # scale) are found. int8 with untrained weights, 2 threads here: 12.1 ms
    # against "m"'s 10.0 and the SSD's 15.1 (same process, interleaved).
    "l": _L,
    # "m" and "l" with the last hidden ReLU unbounded: no ceiling on a cell's people.
    # "m+" is the shipped model (v7).
    "m+": _open_head(_M),
    "l+": _open_head(_L),
    # "m+" with 96-channel context stages and a 48-channel head1: 0.60 GMAC at
    # 512x384, 0.94 at 640x480 (a Mall frame unscaled, ShanghaiTech B at 0.625),
    # where "m+" would take 1.23; a training step of 64 patches 0.84x "m+"'s.
    "m+96": _slim_context(_open_head(_M), context=96, head1=48),
    # "m+" slimmed to under half the compute bar (0.49 GMAC at 512x384: 56-channel
    # 1/8 path, 76-channel context, 48-channel head1), so that a frame and its
    # mirror image together (`[model] mirror = "both"`) stay under 1.0.
    "m+half": _slim_context(_open_head(_M), context=76, head1=48, s8=56),
    # "m+" on a frame of twice the side (1024x768: ShanghaiTech B unscaled, output
    # stride 16): its first convolution, 6x6 with stride 4 and 24 channels, reads
    # the native pixels where "m+" reads a half-size frame through a 3x3 stride 2.
    # Everything after it is "m+"'s, at the same 1/4-of-512 resolution, so the cost
    # grows by that layer and stem2's wider input only: 0.85 GMAC. Why: at 512x384
    # ShanghaiTech B's far-field heads are 2-4 px apart, and its densest validation
    # images lose their undercount there (model card, "Toward the bars").
    # `widen.py` starts it from trained "m+" weights.
    "m+x2": [Conv("stem1", INPUT, 24, kernel=6, stride=4),
             *[replace(l, filters=24) if l.name == "stem2" else l for l in _open_head(_M)[1:]]],
}


def layers_of(arch: str) -> list[Layer]:
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; one of {', '.join(ARCHS)}")
    return ARCHS[arch]


def output_stride(arch: str) -> int:
    """Input pixels per output cell, along each side."""
    scale = {INPUT: 1}
    for layer in layers_of(arch):
        if isinstance(layer, Conv):
            scale[layer.name] = scale[layer.source] * layer.stride
        elif isinstance(layer, Upsample):
            scale[layer.name] = scale[layer.source] // 2
        elif isinstance(layer, Add):
            scale[layer.name] = scale[layer.sources[0]]
        else:
            scale[layer.name] = scale[layer.source]
    return scale[layers_of(arch)[-1].name]


def channels(arch: str) -> dict[str, int]:
    """Output channels of every named tensor (the input's too)."""
    out = {INPUT: 1}
    for layer in layers_of(arch):
        if isinstance(layer, Conv):
            out[layer.name] = layer.filters
        elif isinstance(layer, Density):
            out[layer.name] = 1
        elif isinstance(layer, Upsample):
            out[layer.name] = out[layer.source]
        else:
            out[layer.name] = out[layer.sources[0]]
    return out


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding (before, after) of one axis: the output has
    ceil(size / stride) cells and any odd pixel of padding goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def macs(arch: str, width: int, height: int) -> int:
    """Multiply-accumulates of the convolutions at this input size (what
    `crowdsign bench` reads off the .tflite file; BN, ReLU, ADD, resize not counted)."""
    ch = channels(arch)
    size = {INPUT: (height, width)}
    total = 0
    for layer in layers_of(arch):
        if isinstance(layer, (Conv, Density)):
            h, w = size[layer.source]
            stride = layer.stride if isinstance(layer, Conv) else 1
            kernel = layer.kernel if isinstance(layer, Conv) else 1
            size[layer.name] = (-(-h // stride), -(-w // stride))
            oh, ow = size[layer.name]
            total += oh * ow * kernel * kernel * ch[layer.source] * ch[layer.name]
        elif isinstance(layer, Upsample):
            h, w = size[layer.source]
            size[layer.name] = (2 * h, 2 * w)
        else:
            a, b = (size[s] for s in layer.sources)
            if a != b:
                raise ValueError(f"{arch}: {layer.name} adds {a} to {b}: the input size must be "
                                 "a multiple of the deepest stride")
            size[layer.name] = a
    return total
