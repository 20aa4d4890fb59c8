#!/bin/bash
# Fit a model, bootstrap it and profile it on several nodes with Slurm.
#
#   sbatch jobs/slurm.sh                     # the defaults below
#   DATA=survey.h5 FORMULA='y ~ x + (1 | school)' BOOTSTRAP=10000 sbatch --nodes=8 jobs/slurm.sh
#
# Every rank reads its own share of the rows (whole groups of 262,144 rows), then takes
# bootstrap replicates and profile traces in batches from rank 0; rank 0 prints the summary
# and writes the files. The results do not depend on the number of nodes, ranks or threads.
#
# Knobs:
#  --nodes / --ntasks-per-node: ranks. One rank per node with all its cores as threads
#      (--cpus-per-task) keeps one copy of the cross-products per node; several ranks per node
#      cost one copy each. Replicates are independent, so throughput grows with the ranks.
#  --cpus-per-task: threads per rank (passed to --threads) for reading and for replicates.
#  --time: a killed job loses nothing: resubmit the same script and it resumes from CHECKPOINT.
#  CHUNK_ROWS: rows read per HDF5 chunk (memory per reading thread; results do not change).
#SBATCH --job-name=mlm-bootstrap
#SBATCH --nodes=4
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=16
#SBATCH --time=04:00:00
#SBATCH --output=mlm-%j.out
set -euo pipefail

DATA=${DATA:-survey.h5}
FORMULA=${FORMULA:-"y ~ x + (1 + x | school) + (1 | area)"}
BOOTSTRAP=${BOOTSTRAP:-10000}
SEED=${SEED:-1}
OUT=${OUT:-mlm-results}
CHECKPOINT=${CHECKPOINT:-$OUT/checkpoint}
CHUNK_ROWS=${CHUNK_ROWS:-65536}
MLM=${MLM:-mlm}

mkdir -p "$OUT"
# srun starts one mlm per task; mlm finds its rank through PMIx (Slurm built with PMIx) —
# with an OpenMPI-only Slurm, use: mpirun --map-by ppr:1:node:pe=$SLURM_CPUS_PER_TASK "$MLM" …
srun --mpi=pmix "$MLM" fit "$DATA" --formula "$FORMULA" \
    --threads "${SLURM_CPUS_PER_TASK:-1}" --chunk-rows "$CHUNK_ROWS" \
    --bootstrap "$BOOTSTRAP" --seed "$SEED" --bootstrap-table "$OUT/bootstrap.h5" \
    --profile --profile-table "$OUT/profile.csv" \
    --checkpoint "$CHECKPOINT" --json "$OUT/fit.json"
