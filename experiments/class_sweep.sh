#!/usr/bin/env bash
# One configuration over several dataset:class cells, each a resumable `experiments.run` in
# WORKDIR/<dataset>/<class>/NAME/: a finished cell prints its result and changes nothing.
# Usage, from the repository root:
#   bash experiments/class_sweep.sh DATA_ROOT WORKDIR NAME dataset:class ... -- --config.key=value ...
# DATA_ROOT holds mnist/, fashion_mnist/ and cifar10_jpeg.tar.gz (as ../shared/data does). Each
# cell runs `--config <dataset>.py:quick` (one seed) with the keys after `--`. The teacher alone
# over all 30 classes (docs/teacher):
#   bash experiments/class_sweep.sh ../shared/data docs/teacher teacher mnist:0 ... cifar10:9 \
#       -- --config.method=teacher
set -euo pipefail
root=$1 workdir=$2 name=$3
shift 3
cells=()
while [[ $# -gt 0 && $1 != "--" ]]; do cells+=("$1"); shift; done
[[ $# -gt 0 ]] && shift
declare -A files=([mnist]=mnist [fashion_mnist]=fashion_mnist [cifar10]=cifar10_jpeg.tar.gz)
for cell in "${cells[@]}"; do
  dataset=${cell%%:*} class=${cell##*:}
  python -m experiments.run --config "$dataset.py:quick" --config.normal_class="$class" \
    --config.data_dir="$root/${files[$dataset]}" --workdir "$workdir/$dataset/$class/$name" "$@"
done
