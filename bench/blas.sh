# Sourced by the bench scripts: exports OPENBLAS_CORETYPE as the kernels mlm chooses (see
# Sources/Multilevel/LinearAlgebra/BLASKernels.swift), so that R's OpenBLAS, which lme4's
# CHOLMOD calls, runs on the same kernels as mlm's. Needs $mlm.
if [ -z "${OPENBLAS_CORETYPE:-}" ]; then
  kernels=$("$mlm" fit Tests/MultilevelTests/Fixtures/dyestuff.csv --formula "Yield ~ 1 + (1 | Batch)" --verbose 2>&1 >/dev/null \
    | sed -n 's/^BLAS: OpenBLAS kernels \([^ ]*\).*/\1/p')
  [ -n "$kernels" ] && export OPENBLAS_CORETYPE=$kernels
fi
echo "bench: OpenBLAS kernels ${OPENBLAS_CORETYPE:-as detected} for mlm and R" >&2
