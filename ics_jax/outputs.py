"""Files a run leaves behind, each written atomically (temporary file, then rename)."""

import json
import os
import tempfile

import matplotlib

matplotlib.use("Agg")
import flax.serialization  # noqa: E402
import jax  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _read_umask() -> int:
    mask = os.umask(0o022)  # read once, at import, before any writer thread exists
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def _atomic(path: str, write, mode: str = "w") -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-" + os.path.basename(path))
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # as open() would create it, not mkstemp's 0600
        with os.fdopen(fd, mode) as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_json(path: str, obj) -> None:
    """Writes `obj` as indented JSON, atomically."""
    _atomic(path, lambda f: f.write(json.dumps(obj, indent=2, sort_keys=True) + "\n"))


def write_text(path: str, text: str) -> None:
    """Writes `text`, atomically."""
    _atomic(path, lambda f: f.write(text))


def write_npz(path: str, **arrays) -> None:
    """Writes arrays to an `.npz`, atomically."""
    _atomic(path, lambda f: np.savez(f, **arrays), mode="wb")


def write_variables(path: str, variables: dict) -> None:
    """Writes a network's variables (a tree of arrays) to `path` as msgpack, atomically."""
    _atomic(path, lambda f: f.write(flax.serialization.msgpack_serialize(
        jax.device_get(variables))), mode="wb")


def read_variables(path: str) -> dict:
    """Reads variables written by `write_variables` (numpy arrays)."""
    with open(path, "rb") as f:
        return flax.serialization.msgpack_restore(f.read())


class MetricWriter:
    """TensorBoard scalars in `log_dir` (tensorboardX: no TensorFlow needed)."""

    def __init__(self, log_dir: str):
        from tensorboardX import SummaryWriter

        self._writer = SummaryWriter(log_dir)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        for name, value in values.items():
            self._writer.add_scalar(name, value, step)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def plot_typical_atypical(path: str, images: np.ndarray, scores: np.ndarray,
                          num: int = 10, title: str = "") -> None:
    """Saves the paper's Fig. 1: the `num` most typical (highest SSIM) training images above the
    `num` most atypical (lowest SSIM), each captioned with its SSIM."""
    order = np.argsort(scores, kind="stable")
    rows = {"most typical": order[::-1][:num], "most atypical": order[:num]}
    fig, axes = plt.subplots(2, num, figsize=(1.2 * num, 3.0))
    for row, (label, idx) in enumerate(rows.items()):
        for col, i in enumerate(idx):
            ax = axes[row, col]
            img = images[i]
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
            ax.set_title(f"{scores[i]:.3f}", fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[row, 0].set_ylabel(label, fontsize=8)
    fig.suptitle(title + " (SSIM of the autoencoder's reconstruction)", fontsize=9)
    fig.tight_layout()
    save_figure(path, fig)


def save_figure(path: str, fig) -> None:
    """Writes a matplotlib figure as PNG, atomically, and closes it."""
    _atomic(path, lambda f: fig.savefig(f, format="png", dpi=110), mode="wb")
    plt.close(fig)
