#!/bin/bash
# Submits a sharded assay run as a Slurm job array and its merge as a job that waits for
# every array task to succeed:
#
#   RUN_ID=e5-mistral-msmarco MODEL=dir:/models/e5-mistral-7b-instruct TASKS=msmarco \
#     ASSAY_ARGS="--device cuda --data-root /scratch/data" deploy/slurm/submit.sh --array=0-15
#
# Extra arguments go to the array's sbatch (e.g. --array=0-15 for 16 shards, --partition,
# --gres=gpu:1); the scripts' #SBATCH lines give the rest. Prints both job ids; the merged
# record lands in $OUT/$RUN_ID (default $HOME/assay/reports/$RUN_ID).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export RUN_ID=${RUN_ID:-assay-$(date -u +%Y%m%dT%H%M%SZ)}

# --parsable prints "<job id>" or "<job id>;<cluster>".
array=$(sbatch --parsable "$@" "$here/assay-shards.sbatch")
array=${array%%;*}
merge=$(sbatch --parsable --dependency="afterok:$array" --kill-on-invalid-dep=yes "$here/assay-merge.sbatch")
merge=${merge%%;*}
echo "run $RUN_ID: shards in array job $array, merge in job $merge (starts when every shard succeeded)"
echo "ARRAY_JOB=$array"
echo "MERGE_JOB=$merge"
