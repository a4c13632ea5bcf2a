"""A label-free stop: a held-out part of the split, and each seed's network from the report with
the lowest typical/atypical loss on it.

`hold_out` sets a fraction of the typical and of the atypical training images aside before the
classifier trains; `BestReport` measures the binary loss of eq. (3) on them after every report
and keeps, per seed, the state where it was lowest. Only training images and the split's own
labels are read: no test image, no test label.
"""

import dataclasses
import json
import os

import jax
import numpy as np

from ics_jax import checkpoint, outputs
from ics_jax import split as split_lib


def hold_out(split: split_lib.Split, fraction: float,
             key: jax.Array) -> tuple[split_lib.Split, split_lib.Split]:
    """Returns `(training, held_out)` splits of `split`'s images: `round(fraction * n)` of its
    typical and of its atypical indices, drawn by `key`, are held out; each part keeps at least
    2 of each kind. Raises ValueError when that cannot be."""
    key_typical, key_atypical = jax.random.split(key)
    parts = []
    for indices, k in ((split.typical, key_typical), (split.atypical, key_atypical)):
        n_held = int(round(fraction * indices.size))
        if not 2 <= n_held <= indices.size - 2:
            raise ValueError(
                f"validation_fraction={fraction} holds out {n_held} of {indices.size} "
                "images of one part of the split; each side needs at least 2 of each part")
        order = np.asarray(jax.random.permutation(k, indices.size))
        parts.append((np.sort(indices[order[n_held:]]), np.sort(indices[order[:n_held]])))
    (typical, held_typical), (atypical, held_atypical) = parts
    train = dataclasses.replace(split, typical=typical, atypical=atypical)
    held = dataclasses.replace(split, typical=held_typical, atypical=held_atypical)
    return train, held


def balanced_loss(typical_logits: np.ndarray, atypical_logits: np.ndarray) -> float:
    """Returns eq. (3)'s binary cross-entropy with both parts weighted equally, as in the
    half-typical, half-atypical training batch (1 = atypical)."""
    typical = np.mean(np.logaddexp(0.0, typical_logits))  # -log(1 - sigmoid)
    atypical = np.mean(np.logaddexp(0.0, -atypical_logits))  # -log(sigmoid)
    return float(0.5 * (typical + atypical))


class BestReport:
    """Per seed, the state of the report with the lowest held-out loss so far.

    `score(states) -> ([S, Nt] typical logits, [S, Na] atypical logits)` scores the held-out
    images. With `directory`, the best states (Orbax) and the loss of every report
    (`held_out_loss.json`) are saved there after each report, so a resumed run keeps them.
    """

    def __init__(self, score, directory: str | None = None):
        self.score, self.directory = score, directory
        self.points = []  # per report: {"iteration": int, "loss": [S]}
        self.loss = self.iteration = self.states = None  # [S], [S], stacked states
        self._mngr = None
        if directory is not None:
            self._mngr = checkpoint.manager(os.path.join(directory, "best"), keep=1)
            path = os.path.join(directory, "held_out_loss.json")
            if os.path.exists(path):
                with open(path) as f:
                    self.points = json.load(f)

    def resume(self, like) -> None:
        """Restores the saved best states (structured like the stacked states `like`)."""
        if self._mngr is None or checkpoint.latest_step(self._mngr) is None:
            return
        n = jax.tree.leaves(like)[0].shape[0]
        template = {"states": like, "loss": np.zeros(n), "iteration": np.zeros(n, np.int32)}
        step, best = checkpoint.restore_latest(self._mngr, template)
        if step:
            self.states = best["states"]
            self.loss, self.iteration = np.asarray(best["loss"]), np.asarray(best["iteration"])

    def update(self, iteration: int, states) -> np.ndarray:
        """Scores the held-out images with `states` after `iteration`; keeps each seed's state
        if its loss is the lowest so far; returns the `[S]` losses."""
        typical, atypical = self.score(states)
        loss = np.array([balanced_loss(t, a) for t, a in zip(typical, atypical, strict=True)])
        self.points = [p for p in self.points if p["iteration"] < iteration]
        self.points.append({"iteration": iteration, "loss": loss.tolist()})
        better = np.ones_like(loss, bool) if self.loss is None else loss < self.loss
        if better.any():
            host = jax.device_get(states)  # copied only when a seed improved
            if self.states is None:
                self.states, self.loss = host, loss
                self.iteration = np.full(loss.shape, iteration, np.int32)
            else:
                keep = lambda new, old: np.where(  # noqa: E731
                    better.reshape((-1,) + (1,) * (np.ndim(new) - 1)), new, old)
                self.states = jax.tree.map(keep, host, self.states)
                self.loss = np.where(better, loss, self.loss)
                self.iteration = np.where(better, iteration, self.iteration).astype(np.int32)
            if self._mngr is not None:
                checkpoint.save(self._mngr, iteration, {
                    "states": self.states, "loss": self.loss, "iteration": self.iteration},
                    force=True)
        if self.directory is not None:
            outputs.write_json(os.path.join(self.directory, "held_out_loss.json"), self.points)
        return loss

    def finish(self):
        """Waits for the last save; returns the best stacked states (host arrays)."""
        if self._mngr is not None:
            self._mngr.wait_until_finished()
        return self.states

    def summary(self) -> dict:
        """Returns `{iterations: [R], loss: [R][S], stopped_at: [S]}`."""
        return {"iterations": [p["iteration"] for p in self.points],
                "loss": [p["loss"] for p in self.points],
                "stopped_at": self.iteration.tolist()}
