"""The README's library example runs as written (on TFDS mock data, with tiny networks)."""

import json
import pathlib
import re

import pytest
from conftest import TINY, apply_tiny

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _library_example() -> str:
    text = README.read_text()
    section = text[text.index("## As a library"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_library_example_runs(tmp_path, monkeypatch, capsys):
    tfds = pytest.importorskip("tensorflow_datasets")
    import ics_jax

    default = ics_jax.default_config
    # Tiny networks; the example's own 300 iterations, reported and checkpointed once.
    tiny = {**TINY, "log_every": 300, "checkpoint_every": 300}
    monkeypatch.setattr(ics_jax, "default_config", lambda: apply_tiny(default(), tiny))
    monkeypatch.chdir(tmp_path)
    with tfds.testing.mock_data(num_examples=200):
        exec(compile(_library_example(), str(README), "exec"), {})
    printed = capsys.readouterr().out
    results = json.loads((tmp_path / "runs/example/results.json").read_text())
    assert results["num_iterations"] == 300 and len(results["seeds"]) == 1
    assert f"AUC {results['auc_mean']:.3f}" in printed
