"""VGG19 features: equivalence with Keras, the weights file's errors, and the preprocessing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ics_jax import vgg

MEANS_BGR = np.array([103.939, 116.779, 123.68], np.float32)  # Keras' 'caffe' means, BGR


def test_features_equal_keras_vgg19(tmp_path):
    tf = pytest.importorskip("tensorflow", reason="needs the [tfds] extra (TensorFlow)")

    tf.keras.utils.set_random_seed(0)
    # 64x64 leaves block5_pool 2x2, so the spatial average is not a no-op.
    model = tf.keras.applications.VGG19(include_top=False, weights=None, input_shape=(64, 64, 3))
    path = tmp_path / "vgg19.npz"
    vgg.save_keras_model(model, path)
    params = vgg.load_params(path)

    images = np.random.default_rng(0).uniform(size=(3, 64, 64, 3)).astype(np.float32)
    # Keras' own preprocessing of 0..255 RGB, then block5_pool, averaged over its positions.
    keras_input = tf.keras.applications.vgg19.preprocess_input(255.0 * images.copy())
    expected = np.asarray(model(keras_input, training=False)).mean(axis=(1, 2))
    got = vgg.extract_features(params, images, image_size=64, batch_size=2)

    assert got.shape == expected.shape == (3, 512)
    assert np.abs(expected).max() > 0 and np.count_nonzero(expected) > 100
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_missing_file_is_one_line_naming_the_path(tmp_path):
    path = tmp_path / "absent.npz"
    with pytest.raises(vgg.WeightsError) as info:
        vgg.load_params(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message and "vgg19_weights" in message and "ics_jax.vgg" in message
    assert isinstance(info.value, FileNotFoundError)


def test_file_missing_a_layer_names_it(tmp_path):
    arrays = {}
    for name, (kernel_shape, bias_shape) in vgg.layer_shapes().items():
        if name != "block4_conv3":
            arrays[f"{name}/kernel"] = np.zeros(kernel_shape, np.float32)
            arrays[f"{name}/bias"] = np.zeros(bias_shape, np.float32)
    path = tmp_path / "partial.npz"
    np.savez(path, **arrays)
    with pytest.raises(vgg.WeightsError) as info:
        vgg.load_params(path)
    assert "block4_conv3" in str(info.value) and str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_file_with_a_wrong_shape_names_the_key(tmp_path):
    arrays = {}
    for name, (kernel_shape, bias_shape) in vgg.layer_shapes().items():
        arrays[f"{name}/kernel"] = np.zeros(kernel_shape, np.float32)
        arrays[f"{name}/bias"] = np.zeros(bias_shape, np.float32)
    arrays["block2_conv1/kernel"] = np.zeros((3, 3, 128, 64), np.float32)  # IO swapped
    path = tmp_path / "swapped.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="block2_conv1/kernel"):
        vgg.load_params(path)


def test_layer_names_match_keras_and_params():
    names = list(vgg.layer_shapes())
    assert len(names) == 16 and names[0] == "block1_conv1" and names[-1] == "block5_conv4"
    params = jax.eval_shape(lambda: vgg.VGG19Features().init(
        jax.random.key(0), jnp.zeros((1, 32, 32, 3))))["params"]
    assert set(params) == set(names)
    for name, (kernel_shape, bias_shape) in vgg.layer_shapes().items():
        assert params[name]["kernel"].shape == kernel_shape
        assert params[name]["bias"].shape == bias_shape


def test_preprocess_gray_to_bgr_minus_means():
    rng = np.random.default_rng(1)
    gray = rng.uniform(size=(2, 28, 28, 1)).astype(np.float32)
    gray[1] = 1.0  # white, which the resize keeps white
    out = np.asarray(vgg.preprocess(gray, 32))

    assert out.shape == (2, 32, 32, 3)
    # Identical channels before centering: differences between channels are the means'.
    np.testing.assert_allclose(out[..., 1] - out[..., 0], MEANS_BGR[0] - MEANS_BGR[1], atol=1e-3)
    np.testing.assert_allclose(out[..., 2] - out[..., 0], MEANS_BGR[0] - MEANS_BGR[2], atol=1e-3)
    assert np.ptp(out[0, ..., 0]) > 100  # a varying image, not a constant one
    np.testing.assert_allclose(out[1], np.broadcast_to(255.0 - MEANS_BGR, (32, 32, 3)), atol=1e-3)


def test_preprocess_flips_rgb_to_bgr():
    red = np.zeros((1, 32, 32, 3), np.float32)
    red[..., 0] = 1.0
    out = np.asarray(vgg.preprocess(red, 32))
    np.testing.assert_allclose(out[0, 0, 0], [-MEANS_BGR[0], -MEANS_BGR[1], 255.0 - MEANS_BGR[2]],
                               atol=1e-3)


def test_preprocess_resizes_bilinearly():
    ramp = np.tile(np.linspace(0.0, 1.0, 28, dtype=np.float32), (1, 28, 1))[..., None]
    row = np.asarray(vgg.preprocess(ramp, 64))[0, 10, :, 0]
    # Doubling a ramp bilinearly interpolates new levels between the old; nearest repeats them.
    assert len(np.unique(np.round(row, 3))) > 40
    assert np.all(np.diff(row) >= -1e-4)


def test_features_shape_for_mnist_sized_gray():
    # He-normal weights in the tree `test_layer_names_match_keras_and_params` checks against Flax
    # init; Flax's own init compiles one RNG kernel per shape, tens of seconds on a busy CPU.
    rng = np.random.default_rng(3)
    params = {name: {"kernel": rng.normal(0, np.sqrt(2 / np.prod(k[:3])), k).astype(np.float32),
                     "bias": np.zeros(b, np.float32)}
              for name, (k, b) in vgg.layer_shapes().items()}
    images = np.random.default_rng(2).uniform(size=(5, 28, 28, 1)).astype(np.float32)
    features = vgg.extract_features(params, images, image_size=32, batch_size=4)
    assert features.shape == (5, 512) and features.dtype == np.float32
    assert np.all(np.isfinite(features))
    with pytest.raises(ValueError, match="image_size"):
        vgg.extract_features(params, images, image_size=28)
