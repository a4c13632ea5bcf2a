#!/usr/bin/env bash
# The teacher's table (docs/teacher.md) as a resumable sweep: for each dataset:class cell, the
# teacher alone and ICS on its split, 2 seeds each, otherwise the library's defaults (the
# teacher's turns of each image and its mirror, the cosine rate; ICS 300 iterations, the quick
# budget). From the repository root:
#   bash experiments/teacher_table.sh DATA_ROOT WORKDIR dataset:class ...
# The teacher's column first, then ICS's. A finished cell is kept; run again after a stop.
set -euo pipefail
root=$1 workdir=$2
shift 2
bash experiments/class_sweep.sh "$root" "$workdir" teacher "$@" -- \
  --config.method=teacher --config.num_seeds=2
bash experiments/class_sweep.sh "$root" "$workdir" ics_teacher "$@" -- \
  --config.method=ics --config.split_by=teacher --config.num_seeds=2
