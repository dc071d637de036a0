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


def build(height=None, width=None, batch=None, relu=True) -> keras.Model:
    """The model; None sizes make it fully convolutional for training on patches.

    relu=False leaves the output linear, for training: a ReLU output unit that
    a large step pushes below zero everywhere gets no gradient again (the model
    then predicts 0 for ever). Training penalises negative outputs instead, and
    the exported model ends in the ReLU (same weights).
    """
    inp = keras.Input((height, width, 1), batch_size=batch, name="gray")
    x = _conv(inp, 16, stride=2, name="stem1")
    x = _conv(x, 24, stride=2, name="stem2")
    x = _conv(x, 24, name="stem3")
    s8 = _conv(x, 48, stride=2, name="s8a")
    s8 = _conv(s8, 48, name="s8b")
    s16 = _conv(s8, 96, stride=2, name="s16a")
    s16 = _conv(s16, 96, name="s16b")
    s16 = _conv(s16, 96, name="s16c")
    s16 = _conv(s16, 48, kernel=1, name="s16d")
    up = layers.UpSampling2D(2, interpolation="bilinear", name="up")(s16)
    x = layers.Add(name="fuse")([s8, up])
    x = _conv(x, 48, name="head1")
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
