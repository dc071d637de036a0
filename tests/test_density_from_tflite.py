"""Float weights recovered from the shipped int8 model (models/training/from_tflite.py).

Fine-tuning starts from the committed .tflite, so its dequantized kernels must
be the network of the layer list, layer for layer: the check here runs the
recovered float network with numpy alone (no training framework) on a real
Mall frame and compares its density map with the int8 model's.
"""

from __future__ import annotations


import cv2
import numpy as np
import pytest

from crowdsign.counting.runtime import interpreter_class
import numpy_density
from shared_data import REPO, shared_path, training_module

arch = training_module("arch")
from_tflite = training_module("from_tflite")

SHIPPED = REPO / "models/crowdsign_density_gray/crowdsign_density_gray.tflite"
SHIPPED_ARCH = "m+half"  # models/training/recipe.py HALF_RUN


@pytest.fixture(scope="module")
def folded():
    return from_tflite.folded_layers(SHIPPED, SHIPPED_ARCH)


def test_every_convolution_of_the_layer_list_is_recovered_with_its_shape(folded):
    convs = [l for l in arch.layers_of(SHIPPED_ARCH) if isinstance(l, (arch.Conv, arch.Density))]
    channels = arch.channels(SHIPPED_ARCH)
    assert set(folded) == {l.name for l in convs}
    for layer in convs:
        kernel, bias = folded[layer.name]
        size = getattr(layer, "kernel", 1)
        assert kernel.shape == (size, size, channels[layer.source], channels[layer.name])
        assert bias.shape == (channels[layer.name],)
        assert kernel.dtype == np.float32 and np.isfinite(kernel).all()


def test_a_model_of_another_architecture_is_refused_naming_the_layer():
    with pytest.raises(ValueError, match=r"s8a"):
        from_tflite.folded_layers(SHIPPED, "s")


def test_a_detector_is_refused_as_not_this_network():
    ssd = shared_path("models", "ssd_mobilenet_v1_coco_quant.tflite")
    with pytest.raises(ValueError, match="ssd_mobilenet_v1_coco_quant.tflite"):
        from_tflite.folded_layers(ssd, SHIPPED_ARCH)


@pytest.fixture(scope="module")
def gray() -> np.ndarray:
    """A crowded Mall frame at the model's 512x384, gray."""
    path = shared_path("data", "mall", "train", "images", "seq_000700.jpg")
    return cv2.cvtColor(cv2.resize(cv2.imread(str(path)), (512, 384)), cv2.COLOR_BGR2GRAY)


def _int8_density(gray: np.ndarray) -> np.ndarray:
    """The shipped int8 model's density map of one 512x384 gray frame, dequantized."""
    interpreter = interpreter_class()(model_path=str(SHIPPED), num_threads=1)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.set_tensor(inp["index"], gray[None, :, :, None])
    interpreter.invoke()
    scale, zero = out["quantization"]
    return (interpreter.get_tensor(out["index"])[0, ..., 0].astype(np.float64) - zero) * scale


def test_recovered_float_network_gives_the_int8_models_density_map(folded, gray):
    int8 = _int8_density(gray)
    recovered = numpy_density.density(SHIPPED_ARCH, folded, gray)
    assert recovered.shape == int8.shape == (48, 64)
    # The same map up to int8 rounding: one output step per cell, a few % of the count.
    assert np.corrcoef(recovered.ravel(), int8.ravel())[0, 1] > 0.98
    assert np.abs(recovered - int8).max() < 0.1
    assert recovered.sum() == pytest.approx(int8.sum(), rel=0.15)
    assert int8.sum() > 10  # a crowded Mall frame, not an empty map


def test_a_file_that_is_no_model_is_named(tmp_path):
    bogus = tmp_path / "weights.tflite"
    bogus.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(ValueError, match=r"weights\.tflite: not a TFLite model"):
        from_tflite.folded_layers(bogus, SHIPPED_ARCH)


def test_keras_arrays_gives_a_trainable_network_that_counts_like_the_int8_model():
    torch = pytest.importorskip("torch", reason="the train-torch extra (PyTorch) is not installed")
    torch_net = training_module("torch_net")
    path = shared_path("data", "mall", "train", "images", "seq_000700.jpg")
    gray = cv2.cvtColor(cv2.resize(cv2.imread(str(path)), (512, 384)), cv2.COLOR_BGR2GRAY)
    images = gray[None, :, :, None]
    # BatchNorm statistics from the frame's own 256x192 quarters (train_torch's patch).
    patches = np.stack([gray[y:y + 192, x:x + 256] for y in (0, 192) for x in (0, 256)])[..., None]
    arrays = from_tflite.keras_arrays(SHIPPED, SHIPPED_ARCH, images, patches, batch=2)

    bn_means = [v for k, v in arrays.items() if k.endswith("_bn/moving_mean")]
    assert bn_means and all(np.abs(m).sum() > 0 for m in bn_means)  # statistics were measured
    net = torch_net.DensityNet(SHIPPED_ARCH)
    torch_net.load_keras_arrays(net, arrays)
    net.eval()
    with torch.no_grad():
        x = torch.from_numpy(gray.astype(np.float32))[None, None]
        count = float(torch.relu(net(x)).sum()) / arch.DENSITY_SCALE
    assert count == pytest.approx(_int8_density(gray).sum(), rel=0.02)
