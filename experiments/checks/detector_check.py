r"""The detectors' measurements in docs/estimator.md: fit time and test AUC on MNIST digit 0, a
one-class SVM on the same images, fit times at other image sizes, load time in a new process.

    python -m experiments.checks.detector_check --task=fit --n=0 --data_dir=../shared/data/mnist
    python -m experiments.checks.detector_check --task=ocsvm --n=100 --data_dir=../shared/data/mnist
    python -m experiments.checks.detector_check --task=size --size=64 --channels=1 --detector=ICS \
        --params='{"num_iterations": 30}' --data_dir=../shared/data/mnist
    python -m experiments.checks.detector_check --task=save --out=/tmp/ics_model \
        --data_dir=../shared/data/mnist
    python -m experiments.checks.detector_check --task=load --out=/tmp/ics_model \
        --data_dir=../shared/data/mnist

`fit`: `ICS(**params).fit` on the first `n` digit-0 training images (0: all), the test AUC of
ICS, of its split autoencoder's SSIM and of ICS + SSIM on the 10,000 test images. `ocsvm`:
`baselines.ocsvm_scores` on the same images' [0, 1] pixels at nu 0.1 and 0.15. `size`: a
detector's fit time on 200 digit-0 images resized to `size` x `size`, channels repeated.
`save`: an ICS with the default networks, briefly trained, saved to `out` with its scores of
100 test images; `load`: in this new process, the times of `import ics_jax`, `ICS.load` and
the first `decision_function`, and whether the scores equal the saved ones. One JSON line each.
"""

import time

_START = time.perf_counter()

import json  # noqa: E402

from absl import flags  # noqa: E402

from experiments import cli  # noqa: E402

_TASK = flags.DEFINE_enum("task", None, ["fit", "ocsvm", "size", "save", "load"], "What to run.")
_DATA_DIR = flags.DEFINE_string("data_dir", "../shared/data/mnist", "MNIST IDX files.")
_N = flags.DEFINE_integer("n", 0, "fit, ocsvm: the first n training images (0: all).")
_CLASS = flags.DEFINE_integer("normal_class", 0, "fit, ocsvm: the normal MNIST digit.")
_PARAMS = flags.DEFINE_string("params", "{}", "fit, size: the detector's parameters, JSON.")
_SIZE = flags.DEFINE_integer("size", 28, "size: the images' side.")
_CHANNELS = flags.DEFINE_integer("channels", 1, "size: 1 or 3.")
_DETECTOR = flags.DEFINE_enum("detector", "ICS", ["ICS", "AutoencoderSSIM", "DeepSVDD"],
                              "size: which detector.")
_OUT = flags.DEFINE_string("out", "/tmp/ics_model", "save, load: the model's folder.")


def main(argv: list[str]) -> None:
    del argv
    import ics_jax

    imported = time.perf_counter()
    import numpy as np

    from ics_jax import baselines, evaluate
    from ics_jax import data as data_lib

    arrays = data_lib.load_arrays("mnist", _DATA_DIR.value)
    normal = arrays.x_train[arrays.y_train == _CLASS.value]
    labels = (arrays.y_test != _CLASS.value).astype(int)
    params = json.loads(_PARAMS.value)
    task, out = _TASK.value, {}
    if task == "fit":
        normal = normal[:_N.value] if _N.value else normal
        start = time.perf_counter()
        model = ics_jax.ICS(**params).fit(normal)
        out["fit_s"] = round(time.perf_counter() - start, 1)
        scores = model.decision_function(arrays.x_test)
        ssim = -model.split_score(arrays.x_test)
        combined = evaluate.ics_split_scores(scores, ssim, model.decision_scores_,
                                            -model.split_score(normal))
        out.update(n=len(normal), n_iter=model.n_iter_, ics_auc=evaluate.auc(labels, scores),
                   ssim_auc=evaluate.auc(labels, ssim),
                   ics_ssim_auc=evaluate.auc(labels, combined))
    elif task == "ocsvm":
        x = data_lib.to_unit_images(normal[:_N.value] if _N.value else normal)
        test = data_lib.to_unit_images(arrays.x_test)
        out = {f"ocsvm_nu{nu}_auc": evaluate.auc(labels, baselines.ocsvm_scores(x, test, nu=nu))
               for nu in (0.1, 0.15)}
    elif task == "size":
        import jax

        x = data_lib.to_unit_images(normal[:200])
        x = np.asarray(jax.image.resize(x, (200, _SIZE.value, _SIZE.value, 1), "linear"))
        x = np.repeat(x.clip(0, 1), _CHANNELS.value, axis=3)
        start = time.perf_counter()
        model = getattr(ics_jax, _DETECTOR.value)(**params).fit(x)
        out = {"shape": list(x.shape[1:]), "detector": _DETECTOR.value,
               "fit_s": round(time.perf_counter() - start, 1),
               "n_iter": getattr(model, "n_iter_", None)}
    elif task == "save":
        model = ics_jax.ICS(num_iterations=5, ae_num_steps=5).fit(normal[:200])
        model.save(_OUT.value)
        np.save(_OUT.value + "_scores.npy", model.decision_function(arrays.x_test[:100]))
    else:
        start = time.perf_counter()
        model = ics_jax.ICS.load(_OUT.value)
        loaded = time.perf_counter()
        scores = model.decision_function(arrays.x_test[:100])
        out = {"import_s": round(imported - _START, 2), "load_s": round(loaded - start, 2),
               "first_scores_s": round(time.perf_counter() - loaded, 2),
               "bit_identical": bool(np.array_equal(
                   scores, np.load(_OUT.value + "_scores.npy")))}
    print(json.dumps({"task": task, "params": params, **out}), flush=True)


if __name__ == "__main__":
    cli.run_app(main)
