"""The label-free checks of what each split score sees, and the split they choose."""

import warnings

import numpy as np
import pytest

import ics_jax
from ics_jax import evaluate, sight

# A teacher and an autoencoder small enough to fit 120 images of 16x16 in seconds.
SETTINGS = dict(batch_size=16, teacher_num_steps=150, teacher_conv_features=(8,) * 5,
                teacher_dense_features=16, ae_num_steps=100, ae_conv_features=(8,) * 5,
                ae_latent_channels=4)


def _letters(n: int, seed: int) -> np.ndarray:
    """float32 `[n, 16, 16, 1]`: an upright L at a random place under faint noise."""
    rng = np.random.default_rng(seed)
    x = 0.1 * rng.random((n, 16, 16, 1))
    for i, (a, b) in enumerate(rng.integers(2, 6, (n, 2))):
        x[i, a:a + 9, b:b + 2] = 1.0
        x[i, a + 7:a + 9, b:b + 6] = 1.0
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def upright():
    return ics_jax.SplitScore(**SETTINGS).fit(_letters(120, 0))


def test_on_upright_shapes_the_teacher_is_found_to_see(upright):
    assert upright.checks_["teacher"] >= sight.SEES["teacher"]
    assert upright.weights_["teacher"] > 0
    assert sum(upright.weights_.values()) == pytest.approx(1.0)


def test_with_no_upright_orientation_the_teacher_is_found_blind_and_not_followed(upright):
    turned = sight.turned(_letters(120, 0), 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # whether SSIM sees these 120 images is not asked here
        model = ics_jax.SplitScore(**SETTINGS).fit(turned)
    assert model.checks_["teacher"] < sight.SEES["teacher"] <= upright.checks_["teacher"]
    assert model.weights_ == {"teacher": 0.0, "ssim": 1.0}
    # The score is SSIM's alone: its mid-rank among the training images' minus SSIM.
    ssim = sight.anomaly_scores(model.config_, model.model_["split"], turned, ("ssim",))["ssim"]
    reference = model.model_["split"]["reference"]["ssim"]
    np.testing.assert_array_equal(model.decision_function(turned),
                                  evaluate.rank_average(ssim, references=[reference]))


def test_the_split_score_round_trips_bit_for_bit(upright, tmp_path):
    upright.save(tmp_path / "model")
    loaded = ics_jax.SplitScore.load(tmp_path / "model")
    x = _letters(30, 5)
    assert np.array_equal(upright.decision_function(x), loaded.decision_function(x))
    assert loaded.checks_ == upright.checks_ and loaded.weights_ == upright.weights_


def test_the_scores_that_see_are_weighted_alike_and_blind_ones_dropped():
    both = sight.weigh({"teacher": sight.SEES["teacher"], "ssim": 0.99})
    assert both.weights == {"teacher": 0.5, "ssim": 0.5}
    one = sight.weigh({"teacher": 0.9, "ssim": sight.SEES["ssim"] - 0.01})
    assert one.weights == {"teacher": 1.0, "ssim": 0.0}


def test_where_no_score_sees_one_warning_names_the_checks_and_the_nearest_is_used():
    checks = {"teacher": 0.5 * sight.SEES["teacher"], "ssim": 0.9 * sight.SEES["ssim"]}
    with pytest.warns(UserWarning, match="no split score sees") as caught:
        found = sight.weigh(checks)
    assert len(caught) == 1 and f"ssim {checks['ssim']:.2f}" in str(caught[0].message)
    assert found.weights == {"teacher": 0.0, "ssim": 1.0}


def test_moving_the_quadrants_keeps_each_quadrant_and_four_moves_return_the_image():
    x = np.arange(2 * 6 * 6 * 1, dtype=np.float32).reshape(2, 6, 6, 1)
    moved = sight.quadrants_moved(x)
    np.testing.assert_array_equal(moved[:, :3, :3], x[:, :3, 3:])  # top right to top left
    np.testing.assert_array_equal(moved[:, 3:, :3], x[:, :3, :3])  # top left to bottom left
    assert not np.array_equal(moved, x)
    again = moved
    for _ in range(3):
        again = sight.quadrants_moved(again)
    np.testing.assert_array_equal(again, x)


def test_the_combined_score_is_the_weighted_mean_of_ranks_among_the_references():
    reference = {"teacher": np.arange(10.0), "ssim": np.arange(10.0) * 100}
    anomaly = {"teacher": np.array([-1.0, 20.0]), "ssim": np.array([2000.0, -5.0])}
    out = sight.combined(anomaly, reference, {"teacher": 0.75, "ssim": 0.25})
    np.testing.assert_allclose(out, [0.75 * 0.0 + 0.25 * 1.0, 0.75 * 1.0 + 0.25 * 0.0])


def test_non_square_images_are_split_by_ssim_alone():
    wide = np.concatenate([_letters(120, 3), _letters(120, 4)[:, :, :4]], axis=2)  # 16x20
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ics_jax.SplitScore(**SETTINGS).fit(wide)
    assert set(model.checks_) == {"ssim"} and model.weights_ == {"ssim": 1.0}
    assert "teacher" not in model.model_["split"]
