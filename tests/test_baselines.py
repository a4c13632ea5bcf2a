"""The paper's baselines: input normalisation, score direction and shape, and the labels the
network baselines train with."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import apply_tiny

from ics_jax import baselines, default_config, evaluate, methods, models, pipeline, train
from ics_jax import config as config_lib
from ics_jax import data as data_lib
from ics_jax import split as split_lib

RNG = np.random.default_rng(0)


def _blobs(n_train=60, n_test=40, shape=(8, 8, 1)):
    """Normal: a bright centre square plus noise; anomalies (every other test image): noise."""
    x_train = 0.1 * RNG.random((n_train,) + shape, dtype=np.float32)
    x_train[:, 2:6, 2:6] += 0.8
    x_test = 0.1 * RNG.random((n_test,) + shape, dtype=np.float32)
    y_test = (np.arange(n_test) % 2).astype(np.int32)
    x_test[y_test == 0, 2:6, 2:6] += 0.8
    x_test[y_test == 1] = RNG.random(((y_test == 1).sum(),) + shape)
    return data_lib.OneClassData(x_train=x_train, x_test=x_test, y_test=y_test,
                                 test_classes=y_test.astype(np.int64))


def test_global_contrast_normalisation_has_zero_mean_unit_l1_and_ignores_affine_intensity():
    x = RNG.random((5, 6, 6, 1), dtype=np.float32)
    g = baselines.global_contrast_normalize(x)
    flat = g.reshape(5, -1)
    np.testing.assert_allclose(flat.mean(axis=1), 0.0, atol=1e-6)
    np.testing.assert_allclose(np.abs(flat).mean(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(baselines.global_contrast_normalize(3.0 * x + 0.2), g, atol=1e-5)
    assert np.all(baselines.global_contrast_normalize(np.ones((1, 4, 4, 1))) == 0)


def test_min_max_scaling_is_fitted_on_the_normal_training_images_only():
    train_x, test_x = RNG.random((10, 6, 6, 1)), 5.0 * RNG.random((4, 6, 6, 1))
    train, test = baselines.deep_svdd_inputs(train_x, test_x)
    assert train.min() == pytest.approx(0.0, abs=1e-6)
    assert train.max() == pytest.approx(1.0, abs=1e-6)
    assert train.shape == train_x.shape and test.shape == test_x.shape
    # Test images are scaled with the training extremes, not their own.
    gcn = baselines.global_contrast_normalize
    low, high = gcn(train_x).min(), gcn(train_x).max()
    np.testing.assert_allclose(test, (gcn(test_x) - low) / (high - low), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("inputs", ["gcn_minmax", "pixels"])
@pytest.mark.parametrize("method", ["ocsvm", "iforest"])
def test_shallow_baselines_score_anomalies_higher(method, inputs):
    data = _blobs()
    config = default_config()
    config.method, config.baseline_inputs = method, inputs
    scores = methods.METHODS[config.method].scores(config, data, None, seed_ids=[0, 1])
    assert len(scores) == (1 if method == "ocsvm" else 2)  # the OCSVM has no seed
    for s in scores:
        assert s.shape == (data.x_test.shape[0],) and np.isfinite(s).all()
        assert s[data.y_test == 1].min() > s[data.y_test == 0].max()


def test_ocsvm_uses_the_papers_nu_and_gamma():
    x = RNG.normal(size=(200, 5))
    scores = baselines.ocsvm_scores(x, x, nu=0.15)
    # nu bounds the fraction of training points outside the boundary (positive score) from above
    # (and, up to the support vectors on it, from below).
    assert 0.10 <= np.mean(scores > 0) <= 0.16


def test_isolation_forest_seeds_differ_and_repeat():
    data = _blobs()
    a, b = (baselines.iforest_scores(data.x_train, data.x_test, seed) for seed in (0, 1))
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(a, baselines.iforest_scores(data.x_train, data.x_test, 0))


def test_ssim_baseline_ranks_low_similarity_as_anomalous():
    split = split_lib.Split(scores=np.ones(4), atypical=np.array([0]), typical=np.arange(1, 4),
                            test_scores=np.array([0.9, 0.2, 0.5]))
    assert list(np.argsort(baselines.ssim_anomaly_scores(split))) == [0, 2, 1]


def _net_and_step(phases):
    net = models.OneClassNet(models.AlexNet(conv_features=(4,) * 5, dense_features=8,
                                            latent_dim=4), distance="difference")
    tx = train.make_optimizer(3e-3)
    state = train.init_state(net, tx, jax.random.key(0), (28, 28, 1), phases)
    iteration = jax.jit(train.make_iteration(net, tx, batch_size=8, phases=phases))
    return net, state, iteration


def test_nn_w_ics_labels_atypical_images_as_the_positive_class():
    """Typical images black, atypical white: after training, white scores higher."""
    net, state, step = _net_and_step(("intra_class",))
    data = train.SplitData(typical=jnp.zeros((16, 28, 28, 1)), atypical=jnp.ones((4, 28, 28, 1)))
    for t in range(40):
        state, _ = step(state, data, jax.random.key(1), t)
    logits = train.make_predict(net)(state, jnp.concatenate([data.typical[:2], data.atypical[:2]]))
    assert logits[2:].min() > logits[:2].max()


def test_naive_nn_labels_every_training_image_normal():
    """With one label, the anomaly logit of the training images falls from its start."""
    net, state, step = _net_and_step((train.NORMAL_ONLY,))
    images = jnp.asarray(RNG.random((16, 28, 28, 1), dtype=np.float32))
    data = train.SplitData(typical=images, atypical=images)
    predict = train.make_predict(net)
    before = float(predict(state, images).mean())
    losses = []
    for t in range(20):
        state, metrics = step(state, data, jax.random.key(1), t)
        losses.append(float(metrics["loss/normal_only"]))
    assert float(predict(state, images).mean()) < before - 1.0
    assert losses[-1] < losses[0]
    assert len(state.opt_states) == 1  # one phase, one optimizer state


@pytest.mark.parametrize("method", ["naive_nn", "ssim", "iforest"])
def test_pipeline_runs_each_method_with_one_results_format(tmp_path, method):
    config = apply_tiny(default_config())
    config.method = method
    if method == "ssim":  # the split autoencoder's SSIM
        config.split_by = "ssim"
    data = _blobs(shape=(28, 28, 1))
    results = pipeline.run_experiment(config, str(tmp_path), data=data)
    expected_seeds = 1 if method == "ssim" else config.num_seeds
    assert len(results["auc"]) == len(results["seeds"]) == expected_seeds
    assert results["method"] == method
    saved = np.load(tmp_path / "test_scores.npz")  # results.json's AUCs are the saved scores'
    assert results["auc"] == [evaluate.auc(data.y_test, s) for s in saved["scores"]]
    assert results["auc_mean"] > 0.8  # the blobs are easy: each method sees them
    # Only the methods that use the split train the autoencoder.
    assert (tmp_path / "split.npz").exists() == (method == "ssim")
    if method == "ssim":
        assert results["auc_mean"] == results["ssim_auc"]


def _random_vgg_file(path):
    """A VGG19 weights file in the documented format, He-normal random weights."""
    from ics_jax import vgg
    arrays = {}
    for name, (kernel_shape, bias_shape) in vgg.layer_shapes().items():
        fan_in = np.prod(kernel_shape[:-1])
        arrays[f"{name}/kernel"] = (RNG.normal(size=kernel_shape) * np.sqrt(2 / fan_in)
                                    ).astype(np.float32)
        arrays[f"{name}/bias"] = np.zeros(bias_shape, np.float32)
    np.savez(path, **arrays)
    return path


def test_imagenet_ocsvm_scores_every_test_image_once_weights_exist(tmp_path):
    config = default_config()
    config.method = "imagenet_ocsvm"
    with pytest.raises(ValueError, match="vgg19_weights"):  # validated before any work
        config_lib.validate(config)
    config.vgg19_weights = str(_random_vgg_file(tmp_path / "vgg19.npz"))
    config_lib.validate(config)
    data = _blobs(n_train=20, n_test=10, shape=(28, 28, 1))
    (scores,) = methods.METHODS[config.method].scores(config, data, None, seed_ids=[0, 1])
    assert scores.shape == (10,) and np.isfinite(scores).all()
