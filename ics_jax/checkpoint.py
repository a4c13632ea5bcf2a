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


class ModelFileError(ValueError):
    """A saved model that cannot be read; the message names its path and what to do."""


def save_model(path: str, tree, meta: dict) -> None:
    """Saves the arrays `tree` and the JSON-able `meta` as a model in the folder `path`.

    Each save is a new step of a CheckpointManager that keeps one: Orbax writes it to a
    temporary folder and renames it when complete, and only then deletes the previous save,
    so a save interrupted half way leaves the previous one readable. A `path` that is a file,
    or lies under one, raises ModelFileError before anything is written."""
    directory = existing = os.path.abspath(os.path.expanduser(path))
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ModelFileError(f"{path}: {existing} is a file; save to a folder (new, or a "
                             "saved model's)")
    mngr = ocp.CheckpointManager(directory,
                                 options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True))
    try:
        step = (mngr.latest_step() or 0) + 1
        mngr.save(step, args=ocp.args.Composite(arrays=ocp.args.StandardSave(tree),
                                                meta=ocp.args.JsonSave(meta)))
        mngr.wait_until_finished()
    finally:
        mngr.close()


def _model_manager(path: str) -> tuple[ocp.CheckpointManager, int]:
    directory = os.path.abspath(os.path.expanduser(path))
    if not os.path.isdir(directory):
        raise ModelFileError(f"{path}: no such folder; give the folder a model was saved to")
    mngr = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(create=False))
    step = mngr.latest_step()
    if step is None:
        raise ModelFileError(f"{path}: holds no saved model (save one with model.save(path))")
    return mngr, step


def load_model_meta(path: str) -> dict:
    """Returns the `meta` of the model saved at `path`."""
    mngr, step = _model_manager(path)
    try:
        return mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    except Exception as e:  # noqa: BLE001  (any read failure is an unreadable file)
        raise ModelFileError(f"{path}: the saved model cannot be read ({_short(e)}); "
                             "save it again") from e
    finally:
        mngr.close()


def load_model_arrays(path: str):
    """Returns the arrays of the model saved at `path` as host numpy arrays, nested as saved
    (dicts; an empty dict may come back absent). Read without a target: nothing is built or
    compiled to restore into."""
    mngr, step = _model_manager(path)
    try:
        arrays = mngr.restore(step, args=ocp.args.Composite(
            arrays=ocp.args.StandardRestore()))["arrays"]
    except Exception as e:  # noqa: BLE001  (any read failure is an unreadable file)
        raise ModelFileError(f"{path}: the saved model cannot be read ({_short(e)}); "
                             "save it again") from e
    finally:
        mngr.close()
    return jax.device_get(arrays)


def _short(e: Exception) -> str:
    return " ".join(str(e).split())[:200]
