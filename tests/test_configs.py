"""The experiments' named configs: each dataset's default, `quick` and `paper`; the sweeps'."""

import pytest

import ics_jax
from experiments.configs import cifar10, classes, fashion_mnist, mnist, table1
from ics_jax.config import ConfigError, default_config, validate


@pytest.mark.parametrize("module", [mnist, fashion_mnist, cifar10])
def test_paper_is_the_papers_method_and_quick_is_the_default_cut_short(module):
    default, quick, paper = (module.get_config(arg) for arg in (None, "quick", "paper"))
    assert (paper.method, paper.split_by, paper.lr_schedule) == ("ics", "ssim", "constant")
    # One default everywhere: ICS on the self-checked split, as the library's and ICS()'s.
    library = default_config()
    assert (default.method, default.split_by) == ("ics", "auto") == (library.method,
                                                                     library.split_by)
    assert ics_jax.ICS().split_by == "auto"
    validate(default)
    assert (quick.num_seeds, quick.num_iterations) == (1, 300)
    for key in ("method", "split_by", "lr_schedule", "teacher_transformations", "rho",
                "dataset"):
        assert quick[key] == default[key]
    assert (paper.num_iterations, paper.num_seeds) == (10000, 5)  # the paper's budget


def test_table1_reproduces_the_paper_whatever_the_default():
    config = table1.get_config()
    assert (config.split_by, config.lr_schedule) == ("ssim", "constant")


def test_classes_is_each_dataset_s_quick_config_over_classes():
    config = classes.get_config()
    quick = mnist.get_config("quick")
    for key in quick:
        if key != "dataset":  # each cell's own
            assert config[key] == quick[key], key
    assert (config.methods, config.rhos, config.name) == (quick.method, f"{quick.rho:g}", "")


def test_an_unknown_config_argument_names_the_known_ones():
    with pytest.raises(ConfigError, match="'quick' or 'paper'"):
        mnist.get_config("papers")


def test_the_ssim_detector_on_the_teacher_s_split_is_refused():
    config = default_config()
    config.method, config.split_by = "ssim", "teacher"  # would score by the teacher, not SSIM
    with pytest.raises(ConfigError, match="needs split_by=ssim"):
        validate(config)
