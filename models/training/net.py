"""The network: a small multi-scale fully convolutional density regressor.

Gray image (raw pixel values 0..255, one channel) in, density map at 1/8
resolution out. Plain 3x3 convolutions (XNNPACK's fastest int8 kernel; the
channel counts are small enough that depthwise-separable blocks would save
little and train slower on CPU), BatchNorm folded at export, ReLU6 everywhere
but the output (ReLU: a density is >= 0 and unbounded; linear in training).

    stem     3x3/2 1->16, 3x3/2 16->24, 3x3 24->24            (1/4)
    stage8   3x3/2 24->48, 3x3 48->48                          (1/8)
    stage16  3x3/2 48->96, 3x3 96->96, 3x3 96->96, 1x1 96->48  (1/16, context)
    fuse     bilinear x2 upsample of stage16, ADD to stage8   (scale aggregation)
    head     3x3 48->48, 3x3 48->32, 1x1 32->1, ReLU

The 1/16 branch sees ~120 px of context, enough for a whole person at the
deployed scale, while the 1/8 path keeps the heads' positions; adding (not
concatenating) them keeps int8 requantization to one ADD. Keras' nearest
upsampling and dilated convolutions do not survive conversion as single TFLite
ops (they become TILE/RESHAPE and SPACE_TO_BATCH chains), so the model uses
bilinear upsampling (RESIZE_BILINEAR) and plain convolutions only.
"""

from __future__ import annotations

import keras
from keras import layers

# Training targets are density x DENSITY_SCALE (values of order 1-100 for the
# optimiser); the exported model divides it back out of its last convolution,
# so the shipped model outputs people per cell.
DENSITY_SCALE = 100.0


def _conv(x, filters, kernel=3, stride=1, dilation=1, name=None):
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", dilation_rate=dilation,
                      use_bias=False, name=name)(x)
    x = layers.BatchNormalization(momentum=0.95, name=f"{name}_bn")(x)
    return layers.ReLU(6.0, name=f"{name}_relu6")(x)


# Architectures by name. "s" is the first shipped model (0.48 GMAC at 512x384);
# "m" widens the 1/8 and 1/16 stages and adds a 1/32 context stage (0.79 GMAC).
ARCHS = ("s", "m")


def build(height=None, width=None, batch=None, relu=True, arch="s") -> keras.Model:
    """The model; None sizes make it fully convolutional for training on patches.

    relu=False leaves the output linear, for training: a ReLU output unit that
    a large step pushes below zero everywhere gets no gradient again (the model
    then predicts 0 for ever). Training penalises negative outputs instead, and
    the exported model ends in the ReLU (same weights).
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; one of {', '.join(ARCHS)}")
    inp = keras.Input((height, width, 1), batch_size=batch, name="gray")
    x = _conv(inp, 16, stride=2, name="stem1")
    x = _conv(x, 24, stride=2, name="stem2")
    x = _conv(x, 24, name="stem3")
    if arch == "s":
        s8 = _conv(x, 48, stride=2, name="s8a")
        s8 = _conv(s8, 48, name="s8b")
        s16 = _conv(s8, 96, stride=2, name="s16a")
        s16 = _conv(s16, 96, name="s16b")
        s16 = _conv(s16, 96, name="s16c")
        s16 = _conv(s16, 48, kernel=1, name="s16d")
        head = 48
    else:
        s8 = _conv(x, 64, stride=2, name="s8a")
        s8 = _conv(s8, 64, name="s8b")
        s16 = _conv(s8, 128, stride=2, name="s16a")
        s16 = _conv(s16, 128, name="s16b")
        # 1/32: ~300 px of context per cell, for dense street crowds.
        s32 = _conv(s16, 128, stride=2, name="s32a")
        s32 = _conv(s32, 128, name="s32b")
        s32 = _conv(s32, 128, kernel=1, name="s32d")
        up32 = layers.UpSampling2D(2, interpolation="bilinear", name="up32")(s32)
        s16 = layers.Add(name="fuse16")([s16, up32])
        s16 = _conv(s16, 128, name="s16c")
        s16 = _conv(s16, 64, kernel=1, name="s16d")
        head = 64
    up = layers.UpSampling2D(2, interpolation="bilinear", name="up")(s16)
    x = layers.Add(name="fuse")([s8, up])
    x = _conv(x, head, name="head1")
    x = _conv(x, 32, name="head2")
    out = layers.Conv2D(1, 1, name="density")(x)
    if relu:
        out = layers.ReLU(name="density_relu")(out)
    return keras.Model(inp, out, name="crowdsign_density_gray")


def count_macs(model: keras.Model) -> int:
    """Multiply-accumulates of one forward pass at the model's fixed input size.

    Convolutions: out_h * out_w * k_h * k_w * c_in * c_out / groups (depthwise:
    c_in * multiplier); everything else (BN folded, ReLU, ADD, resize) is not
    counted, as is usual.
    """
    total = 0
    for layer in model.layers:
        if isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D)):
            _, oh, ow, oc = layer.output.shape
            kh, kw = layer.kernel_size
            cin = layer.input.shape[-1]
            if isinstance(layer, layers.DepthwiseConv2D):
                total += oh * ow * kh * kw * oc
            else:
                total += oh * ow * kh * kw * cin * oc // getattr(layer, "groups", 1)
    return int(total)
