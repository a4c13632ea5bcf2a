"""Every Orbax call of the project, so that an Orbax API change is a one-file change.

A checkpoint holds the stacked training state (all seeds) under the step number that produced
it; the split is saved beside it by the pipeline (`split.npz`).
"""

import logging
import os

import jax
import orbax.checkpoint as ocp

log = logging.getLogger("ics_jax")


def manager(directory: str, *, save_every: int = 1, keep: int = 2) -> ocp.CheckpointManager:
    """Returns a CheckpointManager over `directory` that saves every `save_every` steps."""
    options = ocp.CheckpointManagerOptions(save_interval_steps=save_every, max_to_keep=keep,
                                           create=True)
    return ocp.CheckpointManager(os.path.abspath(directory), options=options)


def save(mngr: ocp.CheckpointManager, step: int, state, *, force: bool = False) -> bool:
    """Saves `state` at `step` (if due, or if `force`); returns whether it saved."""
    return mngr.save(step, args=ocp.args.StandardSave(state), force=force)


def latest_step(mngr: ocp.CheckpointManager) -> int | None:
    """Returns the newest saved step, or None."""
    return mngr.latest_step()


def restore(mngr: ocp.CheckpointManager, step: int, like):
    """Restores the state saved at `step` with the structure and classes of `like`."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    return mngr.restore(step, args=ocp.args.StandardRestore(abstract))


def restore_latest(mngr: ocp.CheckpointManager, like) -> tuple[int, object]:
    """Restores the newest checkpoint that reads back, newest first; returns `(step, state)`.

    A checkpoint that fails to read (truncated, corrupt) is logged with its path, renamed to
    `<step>.unreadable` and skipped for the one before it. Returns `(0, like)` when none reads.
    """
    for step in sorted(mngr.all_steps(), reverse=True):
        try:
            return step, restore(mngr, step, like)
        except Exception as e:  # noqa: BLE001  (any read failure means: try the previous one)
            path = os.path.join(str(mngr.directory), str(step))
            log.warning("checkpoint %s is unreadable (%s); kept as %s.unreadable, trying the "
                        "previous one", path, " ".join(str(e).split())[:200], path)
            os.rename(path, path + ".unreadable")  # out of the manager's way, not deleted
            mngr.reload()
    return 0, like
