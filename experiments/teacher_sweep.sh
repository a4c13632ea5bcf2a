#!/usr/bin/env bash
# The transformation teacher on the paper's data, one seed a cell, resumable: a finished cell
# prints its result and changes nothing. Usage, from the repository root:
#   bash experiments/teacher_sweep.sh DATA_ROOT WORKDIR [dataset:class ...]
# DATA_ROOT holds mnist/, fashion_mnist/ and cifar10_jpeg.tar.gz (as ../shared/data does).
set -euo pipefail
root=$1 workdir=$2
shift 2
declare -A files=([mnist]=mnist [fashion_mnist]=fashion_mnist [cifar10]=cifar10_jpeg.tar.gz)
for cell in "$@"; do
  dataset=${cell%%:*} class=${cell##*:}
  python -m experiments.run --config "$dataset.py:quick" --config.method=teacher \
    --config.normal_class="$class" --config.num_seeds=1 \
    --config.data_dir="$root/${files[$dataset]}" --workdir "$workdir/$dataset/$class/teacher"
done
