"""VGG19 ImageNet features for the paper's "ImageNet + OCSVM" baseline.

`VGG19Features` is the convolutional part of Keras' `tf.keras.applications.VGG19`, global-average
pooled to `[B, 512]`. Its weights come from a file that `convert_keras` writes from Keras:

Weights file: an `.npz` with, for each of the 16 convolutions `block{b}_conv{i}` (the Keras layer
names, `block1_conv1` ... `block5_conv4`), the keys `block{b}_conv{i}/kernel` (float32, HWIO
`[3, 3, in, out]`, as Keras stores it) and `block{b}_conv{i}/bias` (float32 `[out]`). On a machine
with internet, `python -m ics_jax.vgg --out vgg19_imagenet.npz` writes the ImageNet one; the
config key `vgg19_weights` points to it.
"""

import argparse
import os
import zipfile

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ics_jax import xla
from ics_jax.evaluate import batched_apply

# (number of convolutions, filters) per block, as in Keras' VGG19.
BLOCKS = ((2, 64), (2, 128), (4, 256), (4, 512), (4, 512))
# ImageNet channel means in BGR order, subtracted by Keras' 'caffe' preprocessing.
BGR_MEANS = (103.939, 116.779, 123.68)
# The smallest input size that leaves block5's max pool a pixel (five halvings).
MIN_IMAGE_SIZE = 32


def layer_shapes() -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """Returns `{layer name: (kernel shape HWIO, bias shape)}` for the 16 convolutions, in order."""
    shapes, in_channels = {}, 3
    for b, (num_convs, filters) in enumerate(BLOCKS, start=1):
        for i in range(1, num_convs + 1):
            shapes[f"block{b}_conv{i}"] = ((3, 3, in_channels, filters), (filters,))
            in_channels = filters
    return shapes


class WeightsError(FileNotFoundError, ValueError):
    """The VGG19 weights file is missing or malformed; `except` either base class catches it."""


class VGG19Features(nn.Module):
    """Keras' VGG19 without its top: blocks of 3x3 'same' convolutions + ReLU, each ending in a
    2x2 max pool. Input: `[B, H, W, 3]` preprocessed by `preprocess`, H and W at least 32.

    Returns `[B, 512]`: block5's pooled output averaged over its spatial positions.
    """

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for b, (num_convs, filters) in enumerate(BLOCKS, start=1):
            for i in range(1, num_convs + 1):
                x = nn.relu(nn.Conv(filters, (3, 3), padding="SAME", name=f"block{b}_conv{i}")(x))
            x = nn.max_pool(x, (2, 2), (2, 2))
        return jnp.mean(x, axis=(1, 2))


def save_keras_model(model, path: str | os.PathLike) -> None:
    """Writes the convolution weights of a built Keras VGG19 `model` to `path` (format above)."""
    arrays = {}
    for name in layer_shapes():
        kernel, bias = model.get_layer(name).get_weights()
        arrays[f"{name}/kernel"] = np.asarray(kernel, np.float32)
        arrays[f"{name}/bias"] = np.asarray(bias, np.float32)
    np.savez(path, **arrays)


def convert_keras(out_path: str | os.PathLike, weights: str | None = "imagenet") -> None:
    """Builds `tf.keras.applications.VGG19(include_top=False, weights=weights)` and writes its
    weights to `out_path`; `weights="imagenet"` downloads Keras' standard file."""
    import tensorflow as tf

    save_keras_model(tf.keras.applications.VGG19(include_top=False, weights=weights), out_path)


def load_params(path: str | os.PathLike):
    """Returns the Flax params of `VGG19Features` read from the `.npz` at `path`.

    Raises `WeightsError` (one line: the path, what is missing, how to make the file) if the file
    is absent or lacks a key or has a wrong shape.
    """
    def fail(problem: str) -> WeightsError:
        return WeightsError(
            f"VGG19 weights {os.fspath(path)!r}: {problem}; make the file with `python -m "
            f"ics_jax.vgg --out {os.fspath(path)}` on a machine with internet and set the config "
            "key vgg19_weights to it")

    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        raise fail("no such file")
    try:
        data = np.load(path)
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise fail(f"not a readable .npz ({type(error).__name__})") from error
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise fail("a single array, not an .npz archive")
    with data:
        arrays = {key: data[key] for key in data.files}
    params = {}
    for name, (kernel_shape, bias_shape) in layer_shapes().items():
        params[name] = {}
        for part, shape in (("kernel", kernel_shape), ("bias", bias_shape)):
            key = f"{name}/{part}"
            if key not in arrays:
                raise fail(f"missing key {key!r} (layer {name})")
            if arrays[key].shape != shape:
                raise fail(f"{key!r} has shape {arrays[key].shape}, expected {shape}")
            params[name][part] = jnp.asarray(arrays[key], jnp.float32)
    return params


def preprocess(images: jax.Array, image_size: int) -> jax.Array:
    """Prepares `[N, H, W, C]` images in [0, 1] (C = 1 or 3, RGB) for `VGG19Features`.

    Grayscale is repeated to 3 channels, then bilinearly resized, scaled to 0..255, flipped to BGR
    and centered by the ImageNet means (Keras' 'caffe' mode). Returns
    `[N, image_size, image_size, 3]` float32.
    """
    if image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size={image_size} is below {MIN_IMAGE_SIZE}, which VGG19's five "
                         "2x2 max pools need")
    images = jnp.asarray(images, jnp.float32)
    if images.shape[-1] not in (1, 3):
        raise ValueError(f"images have {images.shape[-1]} channels; expected 1 or 3")
    images = jnp.broadcast_to(images, images.shape[:-1] + (3,))
    images = jax.image.resize(images, (images.shape[0], image_size, image_size, 3), "bilinear")
    return 255.0 * images[..., ::-1] - jnp.asarray(BGR_MEANS, jnp.float32)


@xla.jit(static_argnums=2)
def _features(params, batch: jax.Array, image_size: int) -> jax.Array:
    return VGG19Features().apply({"params": params}, preprocess(batch, image_size))


def extract_features(params, images: np.ndarray, image_size: int = 32,
                     batch_size: int = 256) -> np.ndarray:
    """Returns `[N, 512]` VGG19 features of `[N, H, W, C]` images in [0, 1] (see `preprocess`)."""
    return batched_apply(lambda batch: _features(params, batch, image_size),
                         np.asarray(images, np.float32), batch_size)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Writes Keras' ImageNet VGG19 weights as .npz.")
    parser.add_argument("--out", required=True, help="the .npz to write (config: vgg19_weights)")
    convert_keras(parser.parse_args().out)
