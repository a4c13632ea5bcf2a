"""The classifier past its split: the student of the teacher starts where the teacher ended, and
the ranking targets keep the split's order."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ics_jax import config as config_lib
from ics_jax import losses, trainer
from ics_jax import split as split_lib
from ics_jax import teacher as teacher_lib


def _student_config(tiny_config):
    tiny_config.update(student=True, teacher_conv_features=(4, 4, 4, 4, 4),
                       teacher_dense_features=8)
    return tiny_config


def test_the_student_starts_with_the_teachers_transformation_logits(tiny_config):
    config = _student_config(tiny_config)
    teacher_net, tx = teacher_lib.build_teacher(config), teacher_lib.optimizer(config)
    images = jax.random.uniform(jax.random.key(1), (6, 16, 16, 1))
    teacher_state = teacher_lib.init_state(teacher_net, tx, jax.random.key(2), (16, 16, 1))
    # Batch statistics not at their initial values, so copying them is seen too.
    teacher = {"params": teacher_state.params, "batch_stats": jax.tree.map(
        lambda v: v + 0.3, teacher_state.batch_stats)}
    student = trainer.make_trainer(config, teacher)
    state = student.init(jax.random.key(3), (16, 16, 1))
    logits = student.net.apply({"params": state.params, "batch_stats": state.batch_stats},
                               images, method=student.net.transformation_logits)
    np.testing.assert_allclose(logits, teacher_net.apply(teacher, images), rtol=1e-5,
                               atol=1e-6)
    assert student.phases[-1] == "transformation"


def test_the_ranking_loss_rewards_the_targets_order_and_ignores_ties():
    logits = jnp.array([2.0, 0.5, -1.0, 0.0])  # pairs (2.0, -1.0) and (0.5, 0.0)
    ranks = jnp.array([0.9, 0.4, 0.1, 0.4])  # the first pair ordered as its logits, the second tied
    assert losses.ranking_loss(logits, ranks) == pytest.approx(np.log1p(np.exp(-3.0)) / 2)
    assert losses.ranking_loss(-logits, ranks) > losses.ranking_loss(logits, ranks)


def test_the_ranked_split_data_puts_every_atypical_image_above_every_typical_one():
    scores = np.random.default_rng(0).normal(size=40)  # typicality: the lowest 4 are atypical
    split = split_lib.split_by_score(scores, 0.1)
    data = trainer.split_data(np.zeros((40, 4, 4, 1), np.float32), split, ranked=True)
    rank = np.asarray(data.rank)  # typical images first, then atypical
    assert rank[:36].max() < rank[36:].min()
    np.testing.assert_allclose(rank[:36], (np.argsort(np.argsort(-scores[split.typical]))
                                           + 0.5) / 40)  # mid-ranks among all 40


@pytest.mark.parametrize("change", [{"split_by": "ssim"}, {"method": "naive_nn"}])
def test_a_student_needs_a_teacher_split_to_start_from(tiny_config, change):
    config = _student_config(tiny_config)
    config.update(change)
    with pytest.raises(config_lib.ConfigError, match="student=True starts the classifier"):
        config_lib.validate(config)


def test_the_students_table_averages_a_variants_seeds_and_says_how_many():
    from experiments.studies import students

    rows = [{"cell": "mnist:2:ics", "auc": 0.90, "auc_split": 0.95},
            {"cell": "mnist:2:both_long", "auc": 0.93, "auc_split": 0.95},
            {"cell": "mnist:2:both_long:1", "auc": 0.97, "auc_split": 0.95},
            {"cell": "mnist:2:both_round", "auc": 0.96, "auc_split": 0.95, "rounds": [
                {"auc_students": 0.94, "auc_recut_score": 0.955, "moved": 7}]}]
    table = students.report(rows)
    assert "| mnist 2 | 95.0 | 90.0 | 95.0 (2 seeds) | 96.0 |" in table
    assert "| mnist: minus the split's score | | -5.0 (1) | +0.0 (1) | +1.0 (1) |" in table
    assert "| mnist:2:both_round | 95.0 | 94.0, 95.5, 7 | 96.0 |" in table


def test_a_crossfit_round_scores_each_image_by_a_student_that_never_saw_it(monkeypatch):
    import ml_collections

    from experiments.studies import students
    from ics_jax import data as data_lib

    n, m = 40, 10
    typicality = np.random.default_rng(0).permutation(n + m).astype(float)
    value = np.arange(n + m, dtype=np.float32).reshape(-1, 1, 1, 1)  # image k holds k
    data = data_lib.OneClassData(x_train=value[:n], x_test=value[n:], y_test=np.arange(m) % 2,
                                 test_classes=np.arange(m))
    split = split_lib.split_by_score(typicality[:n], 0.1)
    split = split_lib.Split(split.scores, split.atypical, split.typical,
                            test_scores=typicality[n:])
    fitted = []

    def train_states(_, config, images, image_shape):
        fitted.append(set(images.ravel().astype(int)))
        return fitted[-1]

    def test_scores(_, fitted_on, images):  # a student that agrees with the split
        index = images.ravel().astype(int)
        assert not fitted_on & set(index), "a student scored an image it trained on"
        return [-typicality[index]]

    monkeypatch.setattr(trainer, "make_trainer", lambda config: None)
    monkeypatch.setattr(trainer, "training_data", lambda _, images, part: images)
    monkeypatch.setattr(trainer, "train_states", train_states)
    monkeypatch.setattr(trainer, "test_scores", test_scores)
    config = ml_collections.ConfigDict({"seed": 0, "rho": 0.1})
    recut, row = students.crossfit_round(config, data, split)
    assert sorted(map(len, fitted)) == [n // 2, n // 2] and fitted[0] | fitted[1] == set(range(n))
    np.testing.assert_array_equal(recut.atypical, split.atypical)  # the student agreed
    assert row["moved"] == 0
