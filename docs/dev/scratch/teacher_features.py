"""Scratch study (docs/teacher.md): the default teacher's features scored by nearest neighbours
and a Gaussian KDE (as Sohn et al., 2021, score a rotation network's representation), against
its own log-probability score. Trains the default teacher with seed 0 (the development run's
network: the same log-probability AUC). From the repository root:

    python docs/dev/scratch/teacher_features.py cifar10 3 ../shared/data/cifar10_jpeg.tar.gz

Prints the test AUC (%) of each score; features are the backbone's latent `z` of the image and
its mirror ('id') or of all 8 turned views ('rot'), concatenated, L2-normalised.
"""

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from scipy.stats import rankdata

from ics_jax import config as config_lib
from ics_jax import data as data_lib
from ics_jax import evaluate
from ics_jax import teacher as teacher_lib

dataset, normal_class, root = sys.argv[1], int(sys.argv[2]), sys.argv[3]
data = data_lib.load_one_class(dataset, normal_class, data_dir=root)
config = config_lib.default_config()
config.dataset = dataset
t0 = time.time()
net, variables = teacher_lib.fit_teacher(config, data.x_train, jax.random.key(0))
print("trained", round(time.time() - t0), "s", flush=True)
log_p = teacher_lib.teacher_scores(net, variables, data.x_test)
print("logp", round(evaluate.auc(data.y_test, log_p) * 100, 2), flush=True)


@jax.jit
def latent(x):
    _, state = net.apply(variables, x, capture_intermediates=True, mutable=["intermediates"])
    return state["intermediates"]["AlexNet_0"]["__call__"][0]


def features(x, mode):
    mirrored = jnp.flip(x, 2)
    if mode == "id":
        views = [x, mirrored]
    else:
        views = [teacher_lib.transform(v, t) for v in (x, mirrored) for t in range(4)]
    return jnp.concatenate([latent(v) for v in views], axis=1)


def all_features(x, mode):
    return np.concatenate([np.asarray(features(jnp.asarray(x[i:i + 500]), mode))
                           for i in range(0, len(x), 500)])


for mode in ("id", "rot"):
    train, test = all_features(data.x_train, mode), all_features(data.x_test, mode)
    train = train / np.linalg.norm(train, axis=1, keepdims=True)
    test = test / np.linalg.norm(test, axis=1, keepdims=True)
    similarity = test @ train.T  # cosine
    for k in (1, 5, 20):
        knn = -np.sort(similarity, axis=1)[:, -k:].mean(1)
        print(mode, f"knn{k}", round(evaluate.auc(data.y_test, knn) * 100, 2), flush=True)
    gamma = 10.0 / (np.var(train) * train.shape[1])
    kde = -jax.scipy.special.logsumexp(-gamma * (2 - 2 * similarity), axis=1)
    print(mode, "kde", round(evaluate.auc(data.y_test, np.asarray(kde)) * 100, 2), flush=True)
    knn5 = -np.sort(similarity, axis=1)[:, -5:].mean(1)
    both = rankdata(knn5) + rankdata(log_p)
    print(mode, "knn5+logp rank", round(evaluate.auc(data.y_test, both) * 100, 2), flush=True)
