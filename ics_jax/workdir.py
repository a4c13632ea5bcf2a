"""A run's workdir: whether it holds a run of the same config, and that run's results if it
finished. A run resumes only where its config computes the same thing."""

import json
import os

import ml_collections

from ics_jax import config as config_lib
from ics_jax import methods

# Config keys that decide how a run executes but not what it computes: a run may resume (or a
# finished one be found) with other values.
EXECUTION_KEYS = ("data_dir", "tfds_data_dir", "log_every", "checkpoint_every",
                  "keep_checkpoints", "coordinator_address", "num_processes", "process_id",
                  "initialization_timeout")
# Keys added after runs were kept, each with the value that computes what those runs did.
ADDED_KEYS = {"validation_fraction": 0.0, "lr_schedule": "constant", "warmup_iterations": 100,
              "split_by": "ssim", "student": False, "targets": "cut"}
# Not `split_seed`: runs kept before it keyed their seeds otherwise, so they are refused.


def check_same_run(workdir: str, config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError if `workdir` was started with a config that computes something else.

    Keys in `EXECUTION_KEYS` may differ, and so may those the run does not read
    (`methods.unread_keys`);
    `num_iterations` may grow (the run goes on from its last checkpoint), never shrink; under
    `lr_schedule='cosine'` it is fixed (the rate decays to 0 at the end).
    """
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        return
    with open(path) as f:
        before = json.load(f)
    now = json.loads(config_lib.resolved(config).to_json())
    ignored = set(EXECUTION_KEYS) | methods.unread_keys(config)
    if config.lr_schedule == "constant":  # a schedule that decays to 0 at the end fixes the length
        ignored.add("num_iterations")
    # A key missing from `before` came with a later version: it counts as changed, unless
    # `ADDED_KEYS` names the value that computes what runs made without it did.
    before = {**ADDED_KEYS, **before}
    changed = sorted(k for k in now if k not in ignored and before.get(k) != now[k])
    if changed:
        k = changed[0]
        raise config_lib.ConfigError(
            f"{workdir} holds a run with {k}={before.get(k)!r}, not {now[k]!r}; use a new "
            "--workdir, or the same config to resume")
    if (config.method in methods.CLASSIFIERS
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
    if (config.method in methods.CLASSIFIERS
            and results["num_iterations"] != config.num_iterations):
        return None
    return results
