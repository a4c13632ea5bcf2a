r"""Ablation of the ICS design on one class: each variant's AUC with the same data and budget.

    python -m experiments.ablation --config mnist.py --workdir runs/ablation_mnist0 \
        --config.data_dir=../shared/data/mnist --config.num_iterations=100 --config.num_seeds=1

Variants that change only the classifier share one split; variants that change the split
autoencoder or SSIM compute their own. Writes `ablation.json` and `ablation.md` in the workdir.
"""

import os

from absl import flags
from ml_collections import config_flags

from experiments import cli

# name -> config overrides, relative to the config given on the command line.
VARIANTS = {
    "default": {},
    "distance abs(z_i - z_j)": {"distance": "absolute"},
    "binary loss only (NNwICS)": {"method": "nn_w_ics"},
    "authors' network (icsnet)": {"backbone": "icsnet", "dropout": 0.5, "weight_decay": 1e-3},
    "wide AE bottleneck (512)": {"ae_latent_channels": 512},
    "spatial AE bottleneck (4x4x32)": {"ae_global_bottleneck": False},
}
SPLIT_KEYS = ("ae_num_steps", "ae_learning_rate", "ae_latent_channels", "ae_global_bottleneck",
              "ssim_max_val", "rho", "seed")

_CONFIG = config_flags.DEFINE_config_file("config", None, "Base config file.", lock_config=False)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for the ablation's outputs.")
_ONLY = flags.DEFINE_list("only", None, "Run only these variants (names as in VARIANTS).")


def main(argv):
    del argv
    from ics_jax import data as data_lib
    from ics_jax import outputs, pipeline
    from ics_jax import split as split_lib
    base, workdir = _CONFIG.value, _WORKDIR.value
    data = data_lib.load_one_class(base.dataset, base.normal_class, data_dir=base.data_dir,
                                   tfds_data_dir=base.tfds_data_dir)
    splits, rows = {}, []
    names = _ONLY.value or list(VARIANTS)
    for name in names:
        config = base.copy_and_resolve_references()
        config.update(VARIANTS[name])
        split_id = tuple(config[k] for k in SPLIT_KEYS)
        run_dir = os.path.join(workdir, name.replace(" ", "_").replace("|", "").replace("'", ""))
        results = pipeline.run_experiment(config, run_dir, data=data, split=splits.get(split_id))
        if split_id not in splits:
            splits[split_id] = split_lib.load(os.path.join(run_dir, "split.npz"))
        rows.append({"variant": name, "overrides": VARIANTS[name], **results})
        print(f"{name}: AUC {results['auc_mean']:.4f} +- {results['auc_std']:.4f} "
              f"(train {results['timing']['train']:.0f} s)", flush=True)
    outputs.write_json(os.path.join(workdir, "ablation.json"), rows)
    lines = [f"| variant | AUC % ({base.dataset} class {base.normal_class}, "
             f"{base.num_iterations} iterations, {base.num_seeds} seeds) |", "| --- | --- |"]
    lines += [f"| {r['variant']} | {100 * r['auc_mean']:.1f} ({100 * r['auc_std']:.1f}) |"
              for r in rows]
    outputs.write_text(os.path.join(workdir, "ablation.md"), "\n".join(lines) + "\n")


if __name__ == "__main__":
    cli.run_app(main)
