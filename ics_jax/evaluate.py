"""One-vs-rest evaluation: AUC of anomaly scores (higher = more anomalous) on the test split,
and the diagnostics that look at test labels during training (never to choose anything)."""

import json
import os

import numpy as np
from sklearn.metrics import roc_auc_score


def batched_apply(fn, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """Returns `fn` applied to `images` in batches of one size (the last one padded), as one
    host array: `batch_size`, or for fewer images the power of two that holds them, so a few
    compiled programs serve every number of images."""
    n = images.shape[0]
    batch_size = min(batch_size, 1 << max(n - 1, 1).bit_length())
    pad = (-n) % batch_size
    padded = np.concatenate([images, np.zeros((pad,) + images.shape[1:], images.dtype)])
    out = [fn(padded[i:i + batch_size]) for i in range(0, n + pad, batch_size)]
    return np.concatenate([np.asarray(o) for o in out])[:n]


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of `[M]` scores against `[M]` labels (1 = anomaly), a fraction in [0, 1]."""
    scores = np.asarray(scores, dtype=np.float64)
    if not np.all(np.isfinite(scores)):
        raise ValueError("anomaly scores contain NaN or Inf")
    return float(roc_auc_score(np.asarray(labels), scores))


def rank_average(*scores: np.ndarray, references: list[np.ndarray] | None = None) -> np.ndarray:
    """Returns `[M]`: the mean over `scores` (each `[M]`, higher = more anomalous) of each
    image's mid-rank as a fraction in [0, 1], among `references[k]` (`[N_k]`, e.g. the same
    score of the normal training images) when given, else among the M images themselves. No
    score's scale dominates, and with references an image's value does not depend on the others
    scored with it."""
    references = scores if references is None else references
    return np.mean([_mid_rank(np.sort(r), s) for s, r in zip(scores, references, strict=True)],
                   axis=0)


def _mid_rank(sorted_reference: np.ndarray, scores: np.ndarray) -> np.ndarray:
    below = np.searchsorted(sorted_reference, scores, side="left")
    at_or_below = np.searchsorted(sorted_reference, scores, side="right")
    return (below + at_or_below) / (2 * sorted_reference.shape[0])


def summarize(aucs: list[float]) -> dict:
    """Returns `{'auc': [...], 'auc_mean', 'auc_std'}` (population std, as over seeds)."""
    values = np.asarray(aucs, dtype=np.float64)
    return {"auc": [float(a) for a in values], "auc_mean": float(values.mean()),
            "auc_std": float(values.std())}


def authors_protocol_split(labels: np.ndarray, fraction: float = 0.3) -> np.ndarray:
    """Returns a `[M]` bool mask of the 'validation' part of the authors' released code.

    Their code takes the first `fraction` of the normal and the first `fraction` of the abnormal
    test images, in test-set order, to pick the best checkpoint; the rest is the reported part.
    This uses test labels for model selection: a diagnostic of how much that inflates AUC, never
    our protocol.
    """
    labels = np.asarray(labels)
    mask = np.zeros(labels.shape[0], dtype=bool)
    for value in (0, 1):
        where = np.flatnonzero(labels == value)
        mask[where[: int(fraction * where.shape[0])]] = True
    return mask


class TestCurve:
    """Diagnostic: the test AUC of every seed at each report, kept in the JSON file at `path`
    (so a resumed run keeps its earlier points), and the authors' checkpoint selection on it.

    Test labels are read here only to describe training; nothing is chosen by them.
    """

    def __init__(self, labels: np.ndarray, path: str):
        self.labels, self.path = np.asarray(labels), path
        self.valid = authors_protocol_split(self.labels)
        self.points = []  # per report: {iteration, auc [S], authors_valid [S], authors_rest [S]}
        self.scores = {}  # iteration -> [S, M] scores, kept beside as `<path>.npz`
        if os.path.exists(path):
            with open(path) as f:
                self.points = json.load(f)
        if os.path.exists(path + ".npz"):
            with np.load(path + ".npz") as f:
                self.scores = {int(k): f[k] for k in f.files}

    def add(self, iteration: int, scores: list[np.ndarray], write=None) -> None:
        """Records the per-seed `[M]` scores after `iteration`; with `write`, saves the points
        (`write(path, points)`) and the scores (`path.npz`, one `[S, M]` array per iteration)."""
        from ics_jax import outputs

        rest = ~self.valid
        self.points = [p for p in self.points if p["iteration"] < iteration]
        self.points.append({
            "iteration": iteration, "auc": [auc(self.labels, s) for s in scores],
            "authors_valid": [auc(self.labels[self.valid], s[self.valid]) for s in scores],
            "authors_rest": [auc(self.labels[rest], s[rest]) for s in scores]})
        self.scores = {k: v for k, v in self.scores.items() if k < iteration}
        self.scores[iteration] = np.asarray(scores, np.float32)
        if write is not None:
            write(self.path, self.points)
            outputs.write_npz(self.path + ".npz", **{str(k): v for k, v in self.scores.items()})

    def summary(self) -> dict:
        """Returns `{iterations: [R], auc: [R][S]}`."""
        return {"iterations": [p["iteration"] for p in self.points],
                "auc": [p["auc"] for p in self.points]}

    def authors_protocol(self, final_scores: list[np.ndarray]) -> dict:
        """Returns what the authors' released protocol would report: per seed the report with
        the best AUC on 30% of the labelled test set, its AUC on the other 70%, against the
        final parameters' AUC on the same 70%."""
        rest = ~self.valid
        final = [auc(self.labels[rest], s[rest]) for s in final_scores]
        best = [max(self.points, key=lambda p, i=i: p["authors_valid"][i])
                for i in range(len(final))]
        selected = [b["authors_rest"][i] for i, b in enumerate(best)]
        return {"selected_iteration": [b["iteration"] for b in best],
                "auc_selected_on_test": selected, "auc_final_same_70pct": final,
                "inflation_mean": float(np.mean(selected) - np.mean(final))}


def ics_split_scores(classifier: np.ndarray, split: np.ndarray, classifier_train: np.ndarray,
                     split_train: np.ndarray) -> np.ndarray:
    """Returns `[M]` scores of ICS + its split's score: the mean of an image's rank by the
    classifier's anomaly score `classifier` `[M]` among the normal training images'
    `classifier_train` `[N]`, and by the anomaly score the split was cut by, `split` `[M]`
    (minus SSIM, or the teacher's score), among theirs, `split_train`."""
    return rank_average(classifier, split, references=[classifier_train, split_train])
