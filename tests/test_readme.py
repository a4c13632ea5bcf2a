"""Every Python block of the README runs as written, at a test's size: tiny networks, the
blocks' iteration counts cut to 4, a folder of synthetic images for `my_images/`, TFDS mock
data for MNIST."""

import pathlib
import re

import numpy as np
import pytest
from conftest import TINY, apply_tiny
from PIL import Image

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def _write_images(folder: pathlib.Path, n: int, seed: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        image = rng.integers(0, 40, (28, 28), dtype=np.uint8)
        image[8:20, 8:20] += 200
        Image.fromarray(image).save(folder / f"{i}.png")


def test_the_readme_has_its_python_blocks():
    assert len(BLOCKS) == 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index, tmp_path, monkeypatch, capsys):
    tfds = pytest.importorskip("tensorflow_datasets")
    import ics_jax
    from ics_jax import config as config_lib

    default = config_lib.default_config
    tiny = {**TINY, "log_every": 100, "checkpoint_every": 1000}
    monkeypatch.setattr(config_lib, "default_config", lambda: apply_tiny(default(), tiny))
    monkeypatch.setattr(ics_jax, "default_config", config_lib.default_config)
    # A detector's defaults are its own (fixed when the class is made): tiny subclasses.
    for name in ("ICS", "SplitScore", "Teacher"):
        cls = getattr(ics_jax, name)
        small = {k: v for k, v in tiny.items() if k in cls.PARAMS}
        monkeypatch.setattr(ics_jax, name, type(name, (cls,),
                                                {"PARAMS": {**cls.PARAMS, **small}}))
    monkeypatch.chdir(tmp_path)
    _write_images(tmp_path / "my_images" / "normal", 40, 0)
    _write_images(tmp_path / "my_images" / "new", 5, 1)
    namespace = {}
    with tfds.testing.mock_data(num_examples=200):
        block, cut = re.subn(r"num_iterations\s*=\s*\d+", "num_iterations = 4", BLOCKS[index])
        assert cut == BLOCKS[index].count("num_iterations"), "an iteration count left uncut"
        exec(compile(block, f"{README} block {index}", "exec"), namespace)
    if "results" in namespace:  # the library example prints its AUC
        assert f"AUC {namespace['results']['auc_mean']:.3f}" in capsys.readouterr().out
    if "model" in namespace:  # the detector: scored, flagged, saved and loaded
        assert namespace["scores"].shape == namespace["flags"].shape == (5,)
        np.testing.assert_array_equal(namespace["model"].decision_function(namespace["new"]),
                                      namespace["scores"])
