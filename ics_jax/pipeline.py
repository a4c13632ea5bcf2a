"""One experiment end to end: split, train all seeds, evaluate, write the run's files.

`run_experiment(config, workdir)` is the library entry point (the command line only parses flags
and prints). In `workdir` it leaves `config.json`, `split.npz`, `checkpoints/`, TensorBoard
metrics, `typical_atypical.png` and `results.json`; rerun in the same `workdir`, it resumes.
"""

import dataclasses
import os
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ics_jax import (
    baselines,
    checkpoint,
    distributed,
    evaluate,
    loops,
    models,
    outputs,
    seeds,
    train,
)
from ics_jax import config as config_lib
from ics_jax import data as data_lib
from ics_jax import split as split_lib

# Which training phases each neural method cycles through (all share the ICS machinery).
METHOD_PHASES = {"ics": train.PHASES, "nn_w_ics": ("intra_class",),
                 "naive_nn": (train.NORMAL_ONLY,)}
# Methods that need the autoencoder's typical/atypical split.
SPLIT_METHODS = ("ics", "nn_w_ics", "ssim")


def build_network(config: ml_collections.ConfigDict) -> models.OneClassNet:
    """Returns the classifier network that `config` describes."""
    kwargs = {"latent_dim": config.latent_dim, "dense_features": config.dense_features}
    if config.dropout is not None:  # else the backbone's own: alexnet 0, icsnet 0.5
        kwargs["dropout"] = config.dropout
    if config.backbone == "alexnet":
        kwargs.update(batch_norm=config.batch_norm, conv_features=tuple(config.conv_features))
    return models.OneClassNet(models.make_backbone(config.backbone, **kwargs),
                              distance=config.distance)


def train_split_autoencoder(config, images: np.ndarray, key: jax.Array):
    """Returns `(module, params)` of the split autoencoder `config` describes, trained on
    `images` `[N, H, W, C]`."""
    return split_lib.train_autoencoder(
        images, key, num_steps=config.ae_num_steps, batch_size=config.batch_size,
        learning_rate=config.ae_learning_rate, loop_form="python", loss=config.ae_loss,
        autoencoder=models.AutoEncoder(conv_features=tuple(config.ae_conv_features),
                                       latent_channels=config.ae_latent_channels,
                                       global_bottleneck=config.ae_global_bottleneck,
                                       negative_slope=config.ae_negative_slope))


def compute_split(config, images: np.ndarray, key: jax.Array,
                  test_images: np.ndarray | None = None) -> split_lib.Split:
    """Trains the split autoencoder on `images`; returns the SSIM split at `config.rho`, with
    the SSIM of `test_images` if given."""
    autoencoder, params = train_split_autoencoder(config, images, key)
    scores = split_lib.ssim_scores(autoencoder, params, images, max_val=config.ssim_max_val)
    split = split_lib.split_by_score(scores, config.rho)
    if test_images is None:
        return split
    test_scores = split_lib.ssim_scores(autoencoder, params, test_images,
                                        max_val=config.ssim_max_val)
    return dataclasses.replace(split, test_scores=test_scores)


def load_split(path: str) -> split_lib.Split:
    """Reads a split saved by `run_experiment` (`split.npz`)."""
    with np.load(path) as f:
        return split_lib.Split(scores=f["scores"], atypical=f["atypical"], typical=f["typical"],
                               test_scores=f["test_scores"] if "test_scores" in f else None)


def _load_or_compute_split(config, data, key, path, write: bool) -> split_lib.Split:
    if os.path.exists(path):
        return load_split(path)
    split = compute_split(config, data.x_train, key, data.x_test)
    if write:
        save_split(path, split)
    return split


def save_split(path: str, split: split_lib.Split) -> None:
    extra = {} if split.test_scores is None else {"test_scores": split.test_scores}
    outputs.write_npz(path, scores=split.scores, atypical=split.atypical, typical=split.typical,
                      **extra)


def experiment_keys(config: ml_collections.ConfigDict) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Returns the `(split, init, train)` keys of an experiment, all from `config.seed`."""
    split_key, init_key, train_key = jax.random.split(jax.random.key(config.seed), 3)
    return split_key, init_key, train_key


def _resolve(value: str, default: Callable[[], str]) -> str:
    return default() if value == "auto" else value


class NonFiniteError(FloatingPointError):
    """A loss became NaN or Inf; the message names the phase, iteration and seed."""


def _check_finite(metrics: np.ndarray, first_step: int, phases: tuple, seed_ids: list) -> None:
    """Raises NonFiniteError for the first non-finite loss or gradient norm in
    `metrics [steps, S, 2]`."""
    bad = np.argwhere(~np.isfinite(metrics))
    if bad.size:
        step, seed, which = bad[0]
        t = first_step + int(step)
        raise NonFiniteError(
            f"non-finite {phases[t % len(phases)]} {('loss', 'gradient norm')[which]} at "
            f"iteration {t // len(phases)} of seed {seed_ids[seed]}; the last good checkpoint "
            "is kept")


def run_experiment(config: ml_collections.ConfigDict, workdir: str, *,
                   data: data_lib.OneClassData | None = None,
                   split: split_lib.Split | None = None,
                   progress: Callable[[dict], None] | None = None) -> dict:
    """Runs `config` in `workdir`; returns the results dict also written to `results.json`.

    `config.method` is ICS or one of the paper's baselines. `data` overrides loading from
    `config` (tests, notebooks); `split` reuses a split computed for the same data and `rho`
    (ablations, sweeps); `progress` receives a dict per report of a trained network
    (`iteration`, `num_iterations`, per-phase mean `losses`, `seconds`).
    """
    t_start = time.time()
    config_lib.validate(config, data_lib.NUM_CLASSES.get(config.dataset, 10))
    if jax.process_count() > 1 and config.strategy not in ("auto", "sharded"):
        raise config_lib.ConfigError(f"strategy={config.strategy!r} with {jax.process_count()} "
                                     "processes would train every seed in each; use sharded")
    primary = distributed.is_primary()  # with several processes, only process 0 writes files
    os.makedirs(workdir, exist_ok=True)
    if primary:
        outputs.write_json(os.path.join(workdir, "config.json"), config.to_dict())
    if data is None:
        data = data_lib.load_one_class(config.dataset, config.normal_class,
                                       data_dir=config.data_dir,
                                       tfds_data_dir=config.tfds_data_dir)
    split_key, init_key, train_key = experiment_keys(config)
    seed_ids = [config.seed + i for i in range(config.num_seeds)]

    t0 = time.time()
    if config.method in SPLIT_METHODS:
        split_path = os.path.join(workdir, "split.npz")
        if split is None:  # every process computes the same split from the same key
            split = _load_or_compute_split(config, data, split_key, split_path, primary)
        elif primary:
            save_split(split_path, split)
        if primary:
            outputs.plot_typical_atypical(os.path.join(workdir, "typical_atypical.png"),
                                          data.x_train, split.scores,
                                          title=f"{config.dataset} class {config.normal_class}")
    t_split = time.time() - t0

    t0 = time.time()
    if config.method in METHOD_PHASES:
        scores, extra = _train_networks(config, workdir, data, split, init_key, train_key,
                                        seed_ids, progress)
    else:
        if config.method in baselines.DETERMINISTIC:
            seed_ids = seed_ids[:1]
        scores = baselines.method_scores(config, data, split, seed_ids)
        extra = {}
    t_train = time.time() - t0  # training or fitting, and scoring the test set
    aucs = [evaluate.auc(data.y_test, s) for s in scores]

    results = {
        "dataset": config.dataset, "normal_class": config.normal_class, "method": config.method,
        "rho": config.rho, "num_iterations": config.num_iterations, "backbone": config.backbone,
        "seeds": seed_ids, **evaluate.summarize(aucs),
        "backend": jax.default_backend(),
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


def _train_networks(config, workdir, data, split, init_key, train_key, seed_ids, progress):
    """Trains one network per seed (resuming from `workdir/checkpoints`); returns the per-seed
    `[M]` test scores and the results entries the training adds."""
    net = build_network(config)
    tx = train.make_optimizer(config.learning_rate, config.adam_b1)
    phases = METHOD_PHASES[config.method]
    step = train.make_train_step(net, tx, batch_size=config.batch_size,
                                 weight_decay=config.weight_decay, phases=phases)
    if split is None:  # naive_nn: every training image, one label
        images = jnp.asarray(data.x_train)
        split_data = train.SplitData(typical=images, atypical=images)
    else:
        split_data = train.SplitData(typical=jnp.asarray(data.x_train[split.typical]),
                                     atypical=jnp.asarray(data.x_train[split.atypical]))
    init_keys = jax.random.split(init_key, config.num_seeds)
    seed_keys = jax.random.split(train_key, config.num_seeds)
    states = seeds.stack([train.init_state(net, tx, k, data.x_train.shape[1:], phases)
                          for k in init_keys])

    cycle = len(phases)
    num_steps = config.num_iterations * cycle
    report_every = config.log_every * cycle
    ckpt = checkpoint.manager(os.path.join(workdir, "checkpoints"),
                              save_every=config.checkpoint_every * cycle,
                              keep=config.keep_checkpoints)
    first_step, states = checkpoint.restore_latest(ckpt, states)

    predict = jax.jit(train.make_predict(net))
    protocol = _AuthorsProtocol(data.y_test) if config.authors_protocol else None
    writer = _metric_writer(workdir, distributed.is_primary())
    t_train0 = time.time()

    def on_report(end_step, states_now, metrics):
        metrics = distributed.to_host(metrics)  # [report_every, S, 2]: one copy per report
        _check_finite(metrics, end_step - metrics.shape[0], phases, seed_ids)
        losses = metrics[..., 0]
        by_phase = {p: float(losses[i::cycle].mean()) for i, p in enumerate(phases)}
        iteration = end_step // cycle
        writer.write_scalars(iteration, {f"loss/{p}": v for p, v in by_phase.items()})
        checkpoint.save(ckpt, end_step, states_now, force=end_step == num_steps)
        if protocol is not None:
            protocol.update(iteration, _test_scores(predict, distributed.to_host(states_now),
                                                    data.x_test, seed_ids))
        if progress is not None:
            progress({"iteration": iteration, "num_iterations": config.num_iterations,
                      "losses": by_phase, "seconds": time.time() - t_train0})

    loop_form = _resolve(config.loop_form, loops.default_loop_form)
    strategy, rates = config.strategy, {}
    if strategy == "auto" and first_step < num_steps:  # a few steps of each candidate
        strategy, rates = seeds.choose_strategy(step, states, split_data, seed_keys,
                                                loop_form=loop_form, chunk_size=cycle,
                                                cycle=cycle)
    if first_step < num_steps:
        states = seeds.run_seeds(step, states, split_data, seed_keys, first_step,
                                 num_steps - first_step,
                                 strategy=strategy, loop_form=loop_form,
                                 # unrolled: one iteration per program; scan: one report
                                 chunk_size=cycle if loop_form == "unrolled" else report_every,
                                 report_every=report_every, cycle=cycle, on_report=on_report)
    ckpt.wait_until_finished()
    scores = _test_scores(predict, distributed.to_host(states), data.x_test, seed_ids)
    writer.write_scalars(config.num_iterations, {"test/auc_mean": float(np.mean(
        [evaluate.auc(data.y_test, s) for s in scores]))})
    writer.close()
    extra = {"strategy": strategy, "loop_form": loop_form,
             "strategy_seed_steps_per_s": rates}  # what `auto` measured, if it measured
    if protocol is not None:
        extra["authors_protocol"] = protocol.summary(scores)
    return scores, extra


def _test_scores(predict, states, images: np.ndarray, seed_ids: list) -> list[np.ndarray]:
    """Returns one `[M]` array of anomaly logits per seed; `states` may be host arrays (each
    seed's parameters go to the device once, not once per batch)."""
    per_seed = [jax.device_put(s) for s in seeds.unstack(states, len(seed_ids))]
    return [split_lib.batched_apply(lambda b, s=s: predict(s, b), images) for s in per_seed]


def _metric_writer(workdir: str, primary: bool):
    from clu import metric_writers  # TensorFlow-backed; imported only when a run writes
    if not primary:
        return metric_writers.MultiWriter([])
    return metric_writers.SummaryWriter(os.path.join(workdir, "tensorboard"))


class _AuthorsProtocol:
    """Diagnostic: the authors' checkpoint selection by AUC on 30% of the labelled test set."""

    def __init__(self, labels: np.ndarray):
        self.labels = labels
        self.valid = evaluate.authors_protocol_split(labels)
        self.best = None  # per seed: (valid AUC, iteration, AUC on the other 70%)

    def update(self, iteration: int, scores: list[np.ndarray]) -> None:
        rest = ~self.valid
        current = [(evaluate.auc(self.labels[self.valid], s[self.valid]), iteration,
                    evaluate.auc(self.labels[rest], s[rest])) for s in scores]
        self.best = current if self.best is None else [
            c if c[0] > b[0] else b for b, c in zip(self.best, current, strict=False)]

    def summary(self, final_scores: list[np.ndarray]) -> dict:
        rest = ~self.valid
        final = [evaluate.auc(self.labels[rest], s[rest]) for s in final_scores]
        return {"selected_iteration": [b[1] for b in self.best],
                "auc_selected_on_test": [b[2] for b in self.best],
                "auc_final_same_70pct": final,
                "inflation_mean": float(np.mean([b[2] for b in self.best]) - np.mean(final))}
