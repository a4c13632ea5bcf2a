"""One experiment end to end: `run_experiment(config, workdir)`.

In `workdir` it leaves `config.json`, `split.npz`, `checkpoints/`, TensorBoard scalars
(`tensorboard/`), `typical_atypical.png`, `test_scores.npz` (`scores` `[S, M]`, each seed's
anomaly scores of the test images, and their `labels` `[M]`) and `results.json` (written
last). Run again in the same workdir, an unfinished run resumes from its newest checkpoint
(with a constant rate, asked for more iterations, a finished one goes on too; a cosine run's
length is fixed), and a finished one returns its results without touching a file.
"""

import os
import time
from collections.abc import Callable

import jax
import ml_collections
import numpy as np

from ics_jax import baselines, distributed, evaluate, methods, outputs
from ics_jax import config as config_lib
from ics_jax import data as data_lib
from ics_jax import split as split_lib
from ics_jax import trainer as trainer_lib
from ics_jax import workdir as workdir_lib


def run_experiment(config: ml_collections.ConfigDict, workdir: str, *,
                   data: data_lib.OneClassData | None = None,
                   split: split_lib.Split | None = None,
                   progress: Callable[[dict], None] | None = None) -> dict:
    """Runs `config` in `workdir`; returns the results dict also written to `results.json`.

    `config.method` is ICS or one of the paper's baselines. `data` overrides loading from
    `config` (tests, notebooks); `split` reuses a split computed for the same data and `rho`
    (ablations, sweeps); `progress` receives a dict per event: `{"stage": "split", "network",
    "step", "num_steps", "loss", "seconds"}` while the split's networks train, `{"stage":
    "sight", "checks", "weights"}` when the split's checks are done (`split_by='auto'`), `{"stage":
    "train", "iteration", "num_iterations", "losses", "seconds"}` after each report of a
    trained network (the classifier's or, with method 'teacher', the teacher's).
    """
    t_start = time.time()
    config_lib.validate(config, data_lib.NUM_CLASSES.get(config.dataset, 10))
    done = workdir_lib.finished_results(workdir, config)
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
    split_key = split_lib.split_key(config)
    seed_ids = trainer_lib.seed_ids(config)

    t0 = time.time()
    teacher = None
    if config.method in methods.SPLIT:
        split, teacher = _split(config, workdir, data, split, split_key, progress, primary)
    t_split = time.time() - t0

    t0 = time.time()
    extra = {}
    if config.method in methods.TRAINED:
        trainer = trainer_lib.make_trainer(config, teacher)
        training_split, stop = trainer_lib.stop_rule(
            trainer, config, data.x_train, split, split_key,
            os.path.join(workdir, "stopping") if primary else None)
        reports = _Reports(config, workdir, data, trainer, progress, primary)
        states = trainer_lib.train_states(
            trainer, config, trainer_lib.training_data(trainer, data.x_train, training_split),
            data.x_train.shape[1:], checkpoint_dir=os.path.join(workdir, "checkpoints"),
            on_report=reports, stop=stop)
        scores = trainer_lib.test_scores(trainer, states, data.x_test)
        extra = reports.results(states, scores, split, stop)
    else:
        if not methods.METHODS[config.method].seeded:
            seed_ids = seed_ids[:1]
        scores = methods.METHODS[config.method].scores(config, data, split, seed_ids)
    t_train = time.time() - t0  # training or fitting, and scoring the test set
    aucs = [evaluate.auc(data.y_test, s) for s in scores]
    if primary:  # for detectors combined after the fact; the labels too, to score them
        outputs.write_npz(os.path.join(workdir, "test_scores.npz"), scores=np.asarray(
            scores, np.float32), labels=data.y_test)

    results = {
        "dataset": config.dataset, "normal_class": config.normal_class, "method": config.method,
        "rho": config.rho, "split_by": config.split_by, "num_iterations": config.num_iterations,
        "backbone": config.backbone,
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
        if split.sight is not None:  # what the label-free checks found (`ics_jax.sight`)
            results["sight"] = split.sight
    if len(scores) > 1:  # the seeds' mean score as one detector
        extra["ensemble_auc"] = evaluate.auc(data.y_test, np.mean(scores, axis=0))
    results.update(extra)
    if primary:
        outputs.write_json(os.path.join(workdir, "results.json"), results)
    return results


def _split(config, workdir, data, split, key, progress, primary):
    """Returns `(split, teacher)`: the split, `split` if given, else `workdir/split.npz` if
    there, else a new one (every process computes the same one from the same key), and with
    `config.student` the split's teacher's variables (`workdir/split_teacher.msgpack`), else
    None; process 0 writes them and Fig. 1."""
    path = os.path.join(workdir, "split.npz")
    teacher_path = os.path.join(workdir, "split_teacher.msgpack")
    teacher = None
    if config.student and os.path.exists(teacher_path):
        teacher = outputs.read_variables(teacher_path)
    if split is None and os.path.exists(path) and (teacher is not None or not config.student):
        return split_lib.load(path), teacher
    if split is None or (config.student and teacher is None):
        t0 = time.time()

        def on_step(network, step, num_steps, loss):
            if progress is not None:
                progress({"stage": "split", "network": network, "step": step,
                          "num_steps": num_steps, "loss": loss, "seconds": time.time() - t0})
        computed, model = split_lib.compute_split(config, data.x_train, key, data.x_test,
                                                  on_step)
        if progress is not None and computed.sight is not None:
            progress({"stage": "sight", **computed.sight})
        split = computed if split is None else split  # a given split is kept
        teacher = split_lib.split_teacher(config, model) if config.student else None
    if primary:
        split_lib.save(path, split)
        if teacher is not None:
            outputs.write_variables(teacher_path, teacher)
        outputs.plot_typical_atypical(os.path.join(workdir, "typical_atypical.png"),
                                      data.x_train, split.scores,
                                      title=f"{config.dataset} class {config.normal_class}")
    return split, teacher


class _Reports:
    """What a trained network's reports go to: TensorBoard (`loss/<phase>`,
    `grad_norm/<phase>`, `loss/held_out`, `speed/iterations_per_second`), the test curve
    (diagnostics on labelled test data, never a selection) and `progress`."""

    def __init__(self, config, workdir, data, trainer, progress, primary):
        self.config, self.data, self.trainer, self.progress = config, data, trainer, progress
        self.writer = (outputs.MetricWriter(os.path.join(workdir, "tensorboard"))
                       if primary else None)
        self.curve = (evaluate.TestCurve(data.y_test, os.path.join(workdir, "test_curve.json"))
                      if config.test_curve or config.authors_protocol else None)
        self.write = outputs.write_json if primary else None
        self.t0, self.last = time.time(), None  # `last`: (iteration, seconds) of the last report

    def __call__(self, iteration: int, metrics: dict, states) -> None:
        seconds = time.time() - self.t0
        if self.last is not None:  # the first report's time is mostly compiling
            metrics = {**metrics, "speed/iterations_per_second":
                       (iteration - self.last[0]) / max(seconds - self.last[1], 1e-9)}
        self.last = (iteration, seconds)
        if self.writer is not None:
            self.writer.scalars(iteration, metrics)
        if self.curve is not None:
            self.curve.add(iteration, trainer_lib.test_scores(self.trainer, states,
                                                              self.data.x_test), self.write)
        if self.progress is not None:
            self.progress({"stage": "train", "iteration": iteration,
                           "num_iterations": self.trainer.num_iterations, "seconds": seconds,
                           "losses": {k.removeprefix("loss/"): v for k, v in metrics.items()
                                      if k.startswith("loss/")}})

    def results(self, states, scores: list[np.ndarray], split, stop) -> dict:
        """Returns the results entries a trained network adds, and closes TensorBoard."""
        data, extra = self.data, {"placement": trainer_lib.seeds.placement()}
        ensemble = np.mean(scores, axis=0)  # the seeds' mean logit as one detector
        if split is not None and split.test_scores is not None:  # the named variant ICS + SSIM
            ssim = baselines.ssim_anomaly_scores(split)
            train_scores = trainer_lib.test_scores(self.trainer, states, data.x_train)
            extra["ics_ssim_auc"] = evaluate.auc(data.y_test, evaluate.ics_split_scores(
                ensemble, ssim, np.mean(train_scores, axis=0), -split.scores))
            # The same average with ranks among the test images, as earlier tables report it.
            extra["ssim_rank_average_auc"] = evaluate.auc(data.y_test,
                                                          evaluate.rank_average(ensemble, ssim))
        if self.writer is not None:
            self.writer.scalars(self.trainer.num_iterations, {"test/auc_mean": float(np.mean(
                [evaluate.auc(data.y_test, s) for s in scores]))})
            self.writer.close()
        if stop is not None:
            extra["held_out"] = stop.summary()
        if self.config.test_curve:
            extra["test_curve"] = self.curve.summary()
        if self.config.authors_protocol:
            extra["authors_protocol"] = self.curve.authors_protocol(scores)
        return extra
