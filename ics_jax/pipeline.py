"""One experiment end to end: `run_experiment(config, workdir)`.

In `workdir` it leaves `config.json`, `split.npz`, `checkpoints/`, TensorBoard scalars
(`tensorboard/`), `typical_atypical.png` and `results.json` (written last). Run again in the
same workdir, an unfinished run resumes from its newest checkpoint (asked for more iterations, a
finished one goes on too), and a finished one returns its results without touching a file.
"""

import json
import os
import time
from collections.abc import Callable

import jax
import ml_collections
import numpy as np

from ics_jax import baselines, distributed, evaluate, outputs
from ics_jax import config as config_lib
from ics_jax import data as data_lib
from ics_jax import split as split_lib
from ics_jax import trainer as trainer_lib

# Methods that need the autoencoder's typical/atypical split.
SPLIT_METHODS = ("ics", "nn_w_ics", "ssim")
# Config keys that decide how a run executes but not what it computes: a run may resume (or a
# finished one be found) with other values.
EXECUTION_KEYS = ("data_dir", "tfds_data_dir", "log_every", "checkpoint_every",
                  "keep_checkpoints", "coordinator_address", "num_processes", "process_id",
                  "initialization_timeout")
# Keys that only the split (and the methods that use it) read.
SPLIT_KEYS = ("rho", "ssim_max_val")
SPLIT_KEY_PREFIX = "ae_"
# Keys added after runs were kept, each with the value that computes what those runs did.
ADDED_KEYS = {"validation_fraction": 0.0}


def experiment_keys(config: ml_collections.ConfigDict) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Returns the `(split, init, train)` keys of an experiment, all from `config.seed`."""
    split_key, init_key, train_key = jax.random.split(jax.random.key(config.seed), 3)
    return split_key, init_key, train_key


def check_same_run(workdir: str, config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError if `workdir` was started with a config that computes something else.

    Keys in `EXECUTION_KEYS` may differ, and so may split keys for a method without a split;
    `num_iterations` may grow (the run goes on from its last checkpoint), never shrink.
    """
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        return
    with open(path) as f:
        before = json.load(f)
    now = json.loads(config_lib.resolved(config).to_json())
    ignored = set(EXECUTION_KEYS) | {"num_iterations"}
    if config.method not in SPLIT_METHODS:
        ignored |= {k for k in now if k in SPLIT_KEYS or k.startswith(SPLIT_KEY_PREFIX)}
    # A key missing from `before` came with a later version: it counts as changed, unless
    # `ADDED_KEYS` names the value that computes what runs made without it did.
    before = {**ADDED_KEYS, **before}
    changed = sorted(k for k in now if k not in ignored and before.get(k) != now[k])
    if changed:
        k = changed[0]
        raise config_lib.ConfigError(
            f"{workdir} holds a run with {k}={before.get(k)!r}, not {now[k]!r}; use a new "
            "--workdir, or the same config to resume")
    if (config.method in trainer_lib.METHOD_PHASES
            and before.get("num_iterations", 0) > config.num_iterations):
        raise config_lib.ConfigError(
            f"{workdir} holds a run of num_iterations={before['num_iterations']}, more than "
            f"{config.num_iterations}; ask at least as many, or use a new --workdir")


def finished_results(workdir: str, config: ml_collections.ConfigDict) -> dict | None:
    """Returns the results of a finished run of `config` in `workdir`, or None if there is
    none (or it ran fewer iterations than `config` asks); raises ConfigError if `workdir` holds
    a run of another config."""
    check_same_run(workdir, config)
    path = os.path.join(workdir, "results.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        results = json.load(f)
    if (config.method in trainer_lib.METHOD_PHASES
            and results["num_iterations"] != config.num_iterations):
        return None
    return results


def run_experiment(config: ml_collections.ConfigDict, workdir: str, *,
                   data: data_lib.OneClassData | None = None,
                   split: split_lib.Split | None = None,
                   progress: Callable[[dict], None] | None = None) -> dict:
    """Runs `config` in `workdir`; returns the results dict also written to `results.json`.

    `config.method` is ICS or one of the paper's baselines. `data` overrides loading from
    `config` (tests, notebooks); `split` reuses a split computed for the same data and `rho`
    (ablations, sweeps); `progress` receives a dict per event: `{"stage": "split", "step",
    "num_steps", "loss", "seconds"}` while the split autoencoder trains, `{"stage": "train",
    "iteration", "num_iterations", "losses", "seconds"}` after each report of a trained network.
    """
    t_start = time.time()
    config_lib.validate(config, data_lib.NUM_CLASSES.get(config.dataset, 10))
    done = finished_results(workdir, config)
    if done is not None:
        return done
    if data is None:
        data = data_lib.load_one_class(config.dataset, config.normal_class,
                                       data_dir=config.data_dir,
                                       tfds_data_dir=config.tfds_data_dir)
    primary = distributed.is_primary()  # with several processes, only process 0 writes files
    if primary:
        outputs.write_json(os.path.join(workdir, "config.json"),
                           config_lib.resolved(config).to_dict())
    split_key, init_key, train_key = experiment_keys(config)
    seed_ids = [config.seed + i for i in range(config.num_seeds)]

    t0 = time.time()
    if config.method in SPLIT_METHODS:
        split = _split(config, workdir, data, split, split_key, progress, primary)
    t_split = time.time() - t0

    t0 = time.time()
    extra = {}
    if config.method in trainer_lib.METHOD_PHASES:
        scores, extra = _train_networks(config, workdir, data, split,
                                        (split_key, init_key, train_key), progress, primary)
    else:
        if config.method in baselines.DETERMINISTIC:
            seed_ids = seed_ids[:1]
        scores = baselines.method_scores(config, data, split, seed_ids)
    t_train = time.time() - t0  # training or fitting, and scoring the test set
    aucs = [evaluate.auc(data.y_test, s) for s in scores]

    results = {
        "dataset": config.dataset, "normal_class": config.normal_class, "method": config.method,
        "rho": config.rho, "num_iterations": config.num_iterations, "backbone": config.backbone,
        "seeds": seed_ids, **evaluate.summarize(aucs),
        "backend": jax.default_backend(), "num_devices": jax.device_count(),
        "timing": {"split": t_split, "train": t_train, "total": time.time() - t_start},
    }
    if split is not None:
        results.update(num_typical=int(split.typical.size),
                       num_atypical=int(split.atypical.size),
                       # The paper's SSIM baseline, low SSIM = anomalous. Reported, never used
                       # for selection.
                       ssim_auc=(None if split.test_scores is None else
                                 evaluate.auc(data.y_test,
                                              baselines.ssim_anomaly_scores(split))))
    results.update(extra)
    if primary:
        outputs.write_json(os.path.join(workdir, "results.json"), results)
    return results


def ics_ssim_scores(classifier: np.ndarray, ssim: np.ndarray, classifier_train: np.ndarray,
                    ssim_train: np.ndarray) -> np.ndarray:
    """Returns `[M]` scores of ICS + SSIM: the mean of an image's rank by the classifier's
    anomaly score `classifier` `[M]` among the normal training images' `classifier_train`
    `[N]`, and by its SSIM anomaly score `ssim` `[M]` (minus SSIM) among theirs, `ssim_train`."""
    return evaluate.rank_average(classifier, ssim, references=[classifier_train, ssim_train])


def _split(config, workdir, data, split, key, progress, primary) -> split_lib.Split:
    """Returns the split: `split` if given, else `workdir/split.npz` if there, else a new one
    (every process computes the same one from the same key); process 0 writes it and Fig. 1."""
    path = os.path.join(workdir, "split.npz")
    if split is None and os.path.exists(path):
        return split_lib.load(path)
    if split is None:
        t0 = time.time()

        def on_step(step, loss):
            if progress is not None:
                progress({"stage": "split", "step": step, "num_steps": config.ae_num_steps,
                          "loss": loss, "seconds": time.time() - t0})
        split, _ = split_lib.compute_split(config, data.x_train, key, data.x_test, on_step)
    if primary:
        split_lib.save(path, split)
        outputs.plot_typical_atypical(os.path.join(workdir, "typical_atypical.png"),
                                      data.x_train, split.scores,
                                      title=f"{config.dataset} class {config.normal_class}")
    return split


def _train_networks(config, workdir, data, split, keys, progress, primary):
    """Trains one network per seed (resuming from `workdir/checkpoints`); returns the per-seed
    `[M]` test scores and the results entries the training adds."""
    split_key, init_key, train_key = keys
    trainer = trainer_lib.make_trainer(config)
    training_split, stop = trainer_lib.stop_rule(
        trainer, config, data.x_train, split, split_key,
        os.path.join(workdir, "stopping") if primary else None)
    writer = outputs.MetricWriter(os.path.join(workdir, "tensorboard")) if primary else None
    curve = (evaluate.TestCurve(data.y_test, os.path.join(workdir, "test_curve.json"))
             if config.test_curve or config.authors_protocol else None)
    t0 = time.time()

    def on_report(iteration, losses, states):
        if writer is not None:
            writer.scalars(iteration, {f"loss/{p}": v for p, v in losses.items()})
        if curve is not None:  # diagnostics on labelled test data, never a selection
            curve.add(iteration, trainer_lib.test_scores(trainer, states, data.x_test),
                      outputs.write_json if primary else None)
        if progress is not None:
            progress({"stage": "train", "iteration": iteration,
                      "num_iterations": config.num_iterations, "losses": losses,
                      "seconds": time.time() - t0})

    states = trainer_lib.train_states(
        trainer, config, trainer_lib.split_data(data.x_train, training_split),
        data.x_train.shape[1:], init_key, train_key,
        checkpoint_dir=os.path.join(workdir, "checkpoints"), on_report=on_report, stop=stop)
    scores = trainer_lib.test_scores(trainer, states, data.x_test)
    extra = {"placement": trainer_lib.seeds.placement()}
    ensemble = np.mean(scores, axis=0)  # the seeds' mean logit as one detector
    if len(scores) > 1:
        extra["ensemble_auc"] = evaluate.auc(data.y_test, ensemble)
    if split is not None and split.test_scores is not None:  # the named variant ICS + SSIM
        ssim = baselines.ssim_anomaly_scores(split)
        extra["ics_ssim_auc"] = evaluate.auc(data.y_test, ics_ssim_scores(
            ensemble, ssim, np.mean(trainer_lib.test_scores(trainer, states, data.x_train),
                                    axis=0), -split.scores))
        # The same average with ranks among the test images, as tables made before reported it.
        extra["ssim_rank_average_auc"] = evaluate.auc(data.y_test,
                                                      evaluate.rank_average(ensemble, ssim))
    if writer is not None:
        writer.scalars(config.num_iterations,
                       {"test/auc_mean": float(np.mean([evaluate.auc(data.y_test, s)
                                                        for s in scores]))})
        writer.close()
    if stop is not None:
        extra["held_out"] = stop.summary()
    if config.test_curve:
        extra["test_curve"] = curve.summary()
    if config.authors_protocol:
        extra["authors_protocol"] = curve.authors_protocol(scores)
    return scores, extra
