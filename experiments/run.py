r"""Runs one experiment: `python -m experiments.run --config mnist.py --workdir DIR`.

A bare config name resolves to `experiments/configs/`; a path works too, and `name.py:arg`
passes `arg` to its `get_config`. `--config.KEY=VALUE` overrides any key. With several processes
(`--config.coordinator_address=HOST:PORT --config.num_processes=N --config.process_id=I`, or a
cluster's environment) every process runs this same command; process 0 prints and writes. A
mistake in the command line, config or data ends with one line on stderr and exit code 2
before anything is written (`--debug` shows the traceback). Run again in the same workdir, an
unfinished run resumes and a finished one prints its result and changes nothing.
"""

import os
import sys
import time

from absl import flags
from ml_collections import config_flags

from experiments import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for this run's outputs.")


class _Progress:
    """Prints the progress lines of the split's networks, its checks and the trained network."""

    def __init__(self):
        self.last = None  # (iteration, seconds) of the previous training line

    def __call__(self, event: dict) -> None:
        if event["stage"] == "split":
            print(f"split {event['network']}: step {event['step']}/{event['num_steps']}  "
                  f"loss {event['loss']:.4f}  {event['seconds']:.0f} s", flush=True)
            return
        if event["stage"] == "sight":  # what each split score was found to see
            print("split checks (0 chance, 1 perfect): " + ", ".join(
                f"{k} {v:.2f}" for k, v in event["checks"].items()) + "; weights: " + ", ".join(
                f"{k} {v:.2f}" for k, v in event["weights"].items()), flush=True)
            return
        it, total, seconds = event["iteration"], event["num_iterations"], event["seconds"]
        losses = "  ".join(f"{k} {v:.4f}" for k, v in event["losses"].items())
        if self.last is None:  # the first line: compiling, no rate to tell yet
            speed = f"{seconds:.0f} s, compiling included"
        else:
            rate = (it - self.last[0]) / max(seconds - self.last[1], 1e-9)
            speed = f"{rate:.2f} it/s  {(total - it) / rate / 60:.1f} min left"
        self.last = (it, seconds)
        print(f"iteration {it}/{total}  {losses}  {speed}", flush=True)


# What a run's summary line shows beside its AUC, where results.json has it: the split's own
# score as a detector and ICS + it, whichever score cut the split (results.json keeps the keys).
ALSO_SHOWN = {"ssim_auc": "the split's score", "ics_ssim_auc": "ICS + the split's score"}


def _summary(results: dict, workdir: str) -> str:
    aucs = ", ".join(f"{a:.4f}" for a in results["auc"])
    also = "".join(f"; {name} {results[k]:.4f}" for k, name in ALSO_SHOWN.items()
                   if results.get(k) is not None and results["method"] not in ("ssim", "split"))
    sight = results.get("sight")
    if sight:  # what the label-free checks found
        also += "; split weights " + ", ".join(f"{k} {w:.2f}" for k, w in sight["weights"].items())
    return (f"AUC {results['auc_mean']:.4f} +- {results['auc_std']:.4f} (seeds: {aucs}){also}; "
            f"results in {os.path.join(workdir, 'results.json')}")


def main(argv: list[str]) -> None:
    del argv
    from ics_jax import config as config_lib
    from ics_jax import data as data_lib
    from ics_jax import distributed, methods, pipeline, trainer
    from ics_jax import workdir as workdir_lib

    config, workdir = _CONFIG.value, _WORKDIR.value
    if config is None or workdir is None:
        raise cli.UsageError("give --config NAME.py and --workdir DIR")
    distributed.initialize(config)  # several processes: joins them; else nothing
    if not distributed.is_primary():  # process 0 speaks for all
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
    config_lib.validate(config, data_lib.NUM_CLASSES.get(config.dataset, 10))
    done = workdir_lib.finished_results(workdir, config)
    if done is not None:
        print(f"{workdir} holds this run, finished: {_summary(done, workdir)}; nothing changed",
              flush=True)
        return
    data = data_lib.load_one_class(config.dataset, config.normal_class,
                                   data_dir=config.data_dir, tfds_data_dir=config.tfds_data_dir)
    budget = (f"{config.num_seeds} seed(s) x {trainer.make_trainer(config).num_iterations} "
              "iterations" if config.method in methods.TRAINED else
              "one run, no seed" if not methods.METHODS[config.method].seeded else
              f"{config.num_seeds} seed(s)")
    split = (f", the split by {config.split_by}"
             if config.method in methods.SPLIT else "")
    print(f"{config.method} on {config.dataset} class {config.normal_class}{split}: {budget} "
          f"-> {workdir}", flush=True)
    t0 = time.time()
    results = pipeline.run_experiment(config, workdir, data=data, progress=_Progress())
    print(f"{_summary(results, workdir)}; {time.time() - t0:.0f} s", flush=True)


def run() -> None:
    """Entry point (also called by the tests)."""
    cli.run_app(main)


if __name__ == "__main__":
    run()
