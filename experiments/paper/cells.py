"""The paper's Table 1 and Fig. 4 as a resumable sweep: datasets x normal classes x methods x `rho`.

Each cell (one dataset, normal class, method and, for the methods that use the split, `rho`) is
one `run_experiment` in `workdir/<dataset>/<class>/<method>[_rho<rho>]/`, all its seeds at once;
a cell is finished when its `results.json` exists (written atomically, last). A restarted sweep
skips finished cells and resumes the others from their checkpoints. The split autoencoder is
trained once per dataset and class (`workdir/<dataset>/<class>/split.npz`) and shared by every
method and `rho` that uses it: only the cut through its SSIM scores depends on `rho`.

A named sweep (`name`: one method, one `rho`, any method of `ics_jax.methods`) runs one config
over classes instead: each cell is `workdir/<dataset>/<class>/<name>/`, exactly the run of
`python -m experiments.run` with the same config in that folder, its split in it too (named
sweeps in one workdir may cut their splits differently); it writes no tables.
"""

import dataclasses
import json
import os
from collections.abc import Callable

import ml_collections

from experiments import cli
from experiments.paper import table as paper_table
from ics_jax import config as config_lib
from ics_jax import data as data_lib
from ics_jax import methods as methods_lib
from ics_jax import outputs, pipeline
from ics_jax import split as split_lib
from ics_jax import workdir as workdir_lib


class SweepError(ValueError):
    """A sweep that cannot run as asked; the message says what to change."""


@dataclasses.dataclass(frozen=True)
class Cell:
    """One table entry: `rho` is None for the methods that do not split the normal class;
    `name`, if not empty, is the cell's folder instead of the method's (a named sweep)."""

    dataset: str
    normal_class: int
    method: str
    rho: float | None
    name: str = ""

    def directory(self, workdir: str) -> str:
        name = self.name or (self.method if self.rho is None else f"{self.method}_rho{self.rho:g}")
        return os.path.join(workdir, self.dataset, str(self.normal_class), name)


def sweep_config(base: ml_collections.ConfigDict | None = None) -> ml_collections.ConfigDict:
    """Returns `base` (default: the library defaults) with the sweep's keys, as comma-separated
    strings so that `--config.methods=ics,ocsvm` narrows them: `datasets`, `normal_classes`,
    `methods`, `rhos`, `data_root` (None: TFDS) and `name` (empty: a folder per method and
    `rho`; else the one folder of each class's cell)."""
    c = base or config_lib.default_config()
    c.datasets = ",".join(cli.DATA_FILES)
    c.normal_classes = ",".join(str(i) for i in range(10))
    c.methods = ",".join(paper_table.METHODS)
    c.rhos = "0.1"
    c.data_root = ml_collections.FieldReference(None, field_type=str)
    c.name = ""
    return c


def _parse_list(config, key: str, cast, allowed=None) -> list:
    items = [s.strip() for s in str(config[key]).split(",") if s.strip()]
    try:
        values = [cast(s) for s in items]
    except ValueError as e:
        raise SweepError(f"{key}={config[key]!r}: {e}") from e
    bad = [v for v in values if allowed is not None and v not in allowed]
    if not values or bad:
        raise SweepError(f"{key}={config[key]!r}: give a comma-separated list of "
                         f"{', '.join(map(str, allowed)) if allowed else 'values'}")
    return values


def cells(config: ml_collections.ConfigDict) -> list[Cell]:
    """Returns every cell the sweep `config` asks for, in the order they run."""
    datasets = _parse_list(config, "datasets", str, tuple(cli.DATA_FILES))
    classes = _parse_list(config, "normal_classes", int, tuple(range(10)))
    methods = _parse_list(config, "methods", str, tuple(methods_lib.METHODS))
    other = [m for m in methods if m not in paper_table.METHODS]
    if other and not config.name:
        raise SweepError(f"methods={config.methods!r}: {other[0]} has no column in the paper's "
                         "table; run it as a named sweep (--config.name=FOLDER)")
    rhos = _parse_list(config, "rhos", float)
    out = [Cell(d, c, m, r if m in methods_lib.SPLIT and m != "ssim" else None, config.name)
           for d in datasets for c in classes for m in methods
           for r in (rhos if m in methods_lib.SPLIT and m != "ssim" else [None])]
    if config.name and len(out) > len(datasets) * len(classes):
        raise SweepError(f"name={config.name!r} is one folder per class: give one method and "
                         f"one rho, not methods={config.methods!r}, rhos={config.rhos!r}")
    return out


def cell_config(config: ml_collections.ConfigDict, cell: Cell) -> ml_collections.ConfigDict:
    """Returns the experiment config of one cell: the library's keys of `config`, with the
    cell's dataset, class, method and `rho`, and the dataset's files under `data_root`."""
    c = config_lib.default_config()
    for key in c:
        c[key] = config[key]
    c.dataset, c.normal_class, c.method = cell.dataset, cell.normal_class, cell.method
    if cell.rho is not None:
        c.rho = cell.rho
    if config.data_root is not None:
        c.data_dir = os.path.join(config.data_root, cli.DATA_FILES[cell.dataset])
    return c


def is_finished(workdir: str, cell: Cell, config: ml_collections.ConfigDict) -> bool:
    """Returns whether the cell's run of the sweep `config` has finished in `workdir`."""
    return workdir_lib.finished_results(cell.directory(workdir),
                                        cell_config(config, cell)) is not None


def run_sweep(config: ml_collections.ConfigDict, workdir: str, *,
              on_cell: Callable[[Cell, dict | None], None] | None = None) -> dict[Cell, dict]:
    """Runs every unfinished cell of `config` in `workdir`; returns the results of all finished
    cells. `on_cell(cell, results)` follows each cell (results None for a cell that cannot run
    here: `imagenet_ocsvm` without weights). Tables and figures are rewritten after each cell,
    unless the sweep is named."""
    todo = cells(config)
    for cell in todo:  # every mistake in the config shows before any work
        c = cell_config(config, cell)
        if cell.method != "imagenet_ocsvm" or c.vgg19_weights:
            config_lib.validate(c, data_lib.NUM_CLASSES[cell.dataset])
        workdir_lib.check_same_run(cell.directory(workdir), c)
    loaded = {}
    for cell in todo:
        if is_finished(workdir, cell, config):
            continue
        c = cell_config(config, cell)
        if cell.method == "imagenet_ocsvm" and not c.vgg19_weights:
            if on_cell is not None:
                on_cell(cell, None)
            continue
        key = (cell.dataset, cell.normal_class)
        if key not in loaded:  # one dataset and class in memory at a time
            loaded = {key: data_lib.load_one_class(cell.dataset, cell.normal_class,
                                                   data_dir=c.data_dir,
                                                   tfds_data_dir=c.tfds_data_dir)}
        data = loaded[key]
        split = None  # a named cell's split: in its own folder, as `run_experiment` keeps it
        if c.method in methods_lib.SPLIT and not cell.name:
            split = _class_split(c, data, os.path.dirname(cell.directory(workdir)))
        results = pipeline.run_experiment(c, cell.directory(workdir), data=data, split=split)
        if on_cell is not None:
            on_cell(cell, results)
        if not config.name:
            write_reports(config, workdir)
    if not config.name:
        write_reports(config, workdir)
    return collect(workdir, todo)


def _class_split(config, data: data_lib.OneClassData, class_dir: str) -> split_lib.Split:
    """Returns the split at `config.rho` from the class's autoencoder, trained on first use."""
    path = os.path.join(class_dir, "split.npz")
    if os.path.exists(path):
        return split_lib.recut(split_lib.load(path), config.rho)
    split, _ = split_lib.compute_split(config, data.x_train, split_lib.split_key(config),
                                       data.x_test)
    split_lib.save(path, split)
    outputs.plot_typical_atypical(
        os.path.join(class_dir, "typical_atypical.png"), data.x_train, split.scores,
        title=f"{config.dataset}: {paper_table.class_name(config.dataset, config.normal_class)}")
    return split


def collect(workdir: str, wanted: list[Cell]) -> dict[Cell, dict]:
    """Returns `{cell: results}` for the cells among `wanted` that hold a `results.json`."""
    out = {}
    for cell in wanted:
        path = os.path.join(cell.directory(workdir), "results.json")
        if os.path.exists(path):
            with open(path) as f:
                out[cell] = json.load(f)
    return out


def write_reports(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Writes `table1.md`, `table1.csv` (at the first of `rhos`) and, with several `rhos`,
    `rho_sweep.png`, from the finished cells of `config` in `workdir`. A named sweep has no
    tables: SweepError."""
    from experiments.paper import report

    if config.name:
        raise SweepError(f"name={config.name!r}: a named sweep writes no tables (its cells are "
                         "read by the study that named them)")
    wanted = cells(config)
    results = collect(workdir, wanted)
    rho = _parse_list(config, "rhos", float)[0]
    at_rho = {dataclasses.replace(c, rho=None): r for c, r in results.items()
              if c.rho is None or c.rho == rho}
    missing = {dataclasses.replace(c, rho=None) for c in wanted
               if c.method == "imagenet_ocsvm" and not config.vgg19_weights}
    layout = report.Layout(datasets=_parse_list(config, "datasets", str),
                           classes=_parse_list(config, "normal_classes", int),
                           methods=_parse_list(config, "methods", str))
    outputs.write_text(os.path.join(workdir, "table1.md"),
                       report.table_markdown(at_rho, layout, missing, rho))
    outputs.write_text(os.path.join(workdir, "table1.csv"), report.table_csv(at_rho, layout))
    if len(_parse_list(config, "rhos", float)) > 1:
        report.plot_rho_curve(os.path.join(workdir, "rho_sweep.png"), results)
