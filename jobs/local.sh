#!/bin/bash
# The cluster job on this machine: 2 ranks of one thread each, on the bundled sleepstudy data.
#
#   bash jobs/local.sh                     # or: DATA=… FORMULA=… BOOTSTRAP=… RANKS=… bash jobs/local.sh
#
# Builds the release mlm if needed, then runs the fit with a parametric bootstrap and
# profile intervals under mpirun; results go to $OUT (default /tmp/mlm-local). Run it twice
# after killing it to see it resume from CHECKPOINT (delete $OUT to start afresh).
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=${DATA:-Tests/MultilevelTests/Fixtures/sleepstudy.h5}
FORMULA=${FORMULA:-"Reaction ~ Days + (Days | Subject)"}
BOOTSTRAP=${BOOTSTRAP:-1000}
SEED=${SEED:-1}
RANKS=${RANKS:-2}
OUT=${OUT:-/tmp/mlm-local}
CHECKPOINT=${CHECKPOINT:-$OUT/checkpoint}

[ -x .build/release/mlm ] || swift build -c release --product mlm
mkdir -p "$OUT"
# OpenMPI refuses to run as root unless told; --oversubscribe allows more ranks than cores.
OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
mpirun -np "$RANKS" --oversubscribe .build/release/mlm fit "$DATA" --formula "$FORMULA" \
    --threads 1 --bootstrap "$BOOTSTRAP" --seed "$SEED" --bootstrap-table "$OUT/bootstrap.csv" \
    --profile --profile-table "$OUT/profile.csv" --checkpoint "$CHECKPOINT" --json "$OUT/fit.json"
echo "wrote $OUT/bootstrap.csv, $OUT/profile.csv and $OUT/fit.json" >&2
