#!/bin/bash
# Fit a model, bootstrap it and profile it on several nodes with PBS Pro / Torque.
#
#   qsub jobs/pbs.sh
#   qsub -v DATA=survey.h5,FORMULA='y ~ x + (1 | school)',BOOTSTRAP=10000 -l select=8:ncpus=16:mpiprocs=1 jobs/pbs.sh
#
# Every rank reads its own share of the rows, then takes bootstrap replicates and profile traces
# in batches from rank 0; rank 0 prints the summary and writes the files. The results do not
# depend on the number of nodes, ranks or threads.
#
# Knobs:
#  select=N: nodes; mpiprocs=1: one rank per node, whose threads (ncpus, passed to --threads)
#      use the node's cores — one copy of the cross-products per node.
#  walltime: a killed job loses nothing: qsub the same script again and it resumes from CHECKPOINT.
#  CHUNK_ROWS: rows read per HDF5 chunk (memory per reading thread; results do not change).
#PBS -N mlm-bootstrap
#PBS -l select=4:ncpus=16:mpiprocs=1
#PBS -l walltime=04:00:00
#PBS -j oe
set -euo pipefail
cd "${PBS_O_WORKDIR:-.}"

DATA=${DATA:-survey.h5}
FORMULA=${FORMULA:-"y ~ x + (1 + x | school) + (1 | area)"}
BOOTSTRAP=${BOOTSTRAP:-10000}
SEED=${SEED:-1}
OUT=${OUT:-mlm-results}
CHECKPOINT=${CHECKPOINT:-$OUT/checkpoint}
CHUNK_ROWS=${CHUNK_ROWS:-65536}
THREADS=${NCPUS:-1}
MLM=${MLM:-mlm}

mkdir -p "$OUT"
RANKS=$(wc -l < "$PBS_NODEFILE")
mpirun -np "$RANKS" --hostfile "$PBS_NODEFILE" --map-by ppr:1:node:pe="$THREADS" \
    "$MLM" fit "$DATA" --formula "$FORMULA" \
    --threads "$THREADS" --chunk-rows "$CHUNK_ROWS" \
    --bootstrap "$BOOTSTRAP" --seed "$SEED" --bootstrap-table "$OUT/bootstrap.h5" \
    --profile --profile-table "$OUT/profile.csv" \
    --checkpoint "$CHECKPOINT" --json "$OUT/fit.json"
