"""Deep SVDD baseline: the centre rule, the bias-free networks' shapes, training and scores.

Shapes come from `jax.eval_shape` (nothing compiled); one trained model serves the score tests.
"""

import jax
import numpy as np
import pytest

from ics_jax import dsvdd


def _blobs(n, seed, top=10, left=10):
    """`n` 28x28 images: an 8x8 bright square at (`top`, `left`) on faint noise."""
    images = 0.05 * np.random.default_rng(seed).random((n, 28, 28, 1))
    images[:, top:top + 8, left:left + 8] += 0.9
    return images.astype(np.float32)


def test_center_moves_near_zero_coordinates_out_to_eps_keeping_their_sign():
    # Column means: 0.5, -0.3, 0.05, -0.05, 0 (exactly), 0.15, -0.0999.
    features = np.array([[0.4, -0.2, 0.1, -0.1, 1.0, 0.2, -0.0999],
                         [0.6, -0.4, 0.0, 0.0, -1.0, 0.1, -0.0999]], np.float32)
    center = np.asarray(dsvdd.init_center(features, eps=0.1))
    np.testing.assert_allclose(center, [0.5, -0.3, 0.1, -0.1, 0.1, 0.15, -0.1], rtol=1e-6)


def test_center_uses_the_given_eps():
    features = np.array([[2.0, -3.0, 0.3, -0.3]], np.float32)
    np.testing.assert_allclose(dsvdd.init_center(features, eps=0.5), [2.0, -3.0, 0.5, -0.5])


@pytest.mark.parametrize("shape, rep_dim", [((28, 28, 1), 32), ((32, 32, 3), 128)])
def test_networks_have_no_bias_and_the_documented_shapes(shape, rep_dim):
    autoencoder = dsvdd.LeNetAutoEncoder(dsvdd.encoder_for(shape))
    x = jax.ShapeDtypeStruct((2,) + shape, np.float32)
    variables = jax.eval_shape(lambda k, x: autoencoder.init(k, x, train=False),
                               jax.random.key(0), x)
    paths = [jax.tree_util.keystr(path)
             for path, _ in jax.tree_util.tree_leaves_with_path(variables["params"])]
    assert any("encoder" in path for path in paths) and any("decoder" in path for path in paths)
    assert all(path.endswith("['kernel']") for path in paths), paths

    encoder_variables = {name: tree["encoder"] for name, tree in variables.items()}
    for train in (False, True):
        z, _ = jax.eval_shape(lambda v, x, train=train: autoencoder.encoder.apply(
            v, x, train=train, mutable=["batch_stats"]), encoder_variables, x)
        assert z.shape == (2, rep_dim)
    recon = jax.eval_shape(lambda v, x: autoencoder.apply(v, x, train=False), variables, x)
    assert recon.shape == (2,) + shape


def test_encoder_for_refuses_other_channel_counts():
    with pytest.raises(ValueError, match="channels"):
        dsvdd.encoder_for((28, 28, 2))


def test_pretraining_and_svdd_training_lower_their_losses():
    images = _blobs(64, seed=0)
    key = jax.random.key(0)
    autoencoder, ae_variables, ae_losses = dsvdd.pretrain_autoencoder(
        images, key, num_steps=40, batch_size=16, learning_rate=1e-2)
    assert ae_losses.shape == (40,)
    assert ae_losses[-5:].mean() < 0.5 * ae_losses[:5].mean()

    encoder = autoencoder.encoder
    variables = {name: tree["encoder"] for name, tree in ae_variables.items()}
    center = dsvdd.init_center(dsvdd.encode(encoder, variables, images))
    _, losses = dsvdd.fit_svdd(encoder, variables, center, images, key, num_steps=40,
                               batch_size=16, learning_rate=1e-3)
    assert losses.shape == (40,)
    assert losses[-5:].mean() < 0.5 * losses[:5].mean()


@pytest.fixture(scope="module")
def trained():
    """`(encoder, variables, center)` of Deep SVDD trained on 64 centred-square images."""
    return dsvdd.train_dsvdd(_blobs(64, seed=0), jax.random.key(0), ae_num_steps=30,
                             num_steps=30, batch_size=16, learning_rate=1e-3)


def test_anomalies_score_higher_than_held_out_normal_images(trained):
    normal = _blobs(32, seed=1)
    noise = np.random.default_rng(2).random((32, 28, 28, 1)).astype(np.float32)
    moved = _blobs(32, seed=3, top=2, left=18)
    scores = dsvdd.dsvdd_scores(*trained, np.concatenate([normal, noise, moved]))
    assert scores.shape == (96,)
    assert np.all(np.isfinite(scores)) and np.all(scores >= 0)
    normal_scores, noise_scores, moved_scores = np.split(scores, 3)
    assert noise_scores.mean() > normal_scores.mean()
    assert moved_scores.mean() > normal_scores.mean()


def test_scores_do_not_depend_on_the_batch_they_are_computed_in(trained):
    images = _blobs(8, seed=4)
    noise = np.random.default_rng(5).random((8, 28, 28, 1)).astype(np.float32)
    alone = dsvdd.dsvdd_scores(*trained, images)
    mixed = dsvdd.dsvdd_scores(*trained, np.concatenate([noise, images]))
    np.testing.assert_allclose(mixed[8:], alone, rtol=1e-5)


def test_run_dsvdd_scores_every_test_image():
    scores = dsvdd.run_dsvdd(_blobs(64, seed=0), _blobs(3, seed=1), jax.random.key(1),
                             ae_num_steps=1, num_steps=1, batch_size=16)
    assert scores.shape == (3,) and np.all(np.isfinite(scores)) and np.all(scores >= 0)
