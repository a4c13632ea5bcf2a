"""One-vs-rest evaluation: AUC of anomaly scores (higher = more anomalous) on the test split."""

import numpy as np
from sklearn.metrics import roc_auc_score


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of `[M]` scores against `[M]` labels (1 = anomaly), a fraction in [0, 1]."""
    scores = np.asarray(scores, dtype=np.float64)
    if not np.all(np.isfinite(scores)):
        raise ValueError("anomaly scores contain NaN or Inf")
    return float(roc_auc_score(np.asarray(labels), scores))


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
