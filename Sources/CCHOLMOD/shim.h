#ifndef MULTILEVEL_CCHOLMOD_SHIM_H
#define MULTILEVEL_CCHOLMOD_SHIM_H
#include <suitesparse/cholmod.h>

/* Macros that do not import into Swift. */
static inline int mlm_cholmod_real(void) { return CHOLMOD_REAL; }
static inline int mlm_cholmod_pattern(void) { return CHOLMOD_PATTERN; }
static inline int mlm_cholmod_double(void) { return CHOLMOD_DOUBLE; }
static inline int mlm_cholmod_A(void) { return CHOLMOD_A; }
static inline int mlm_cholmod_L(void) { return CHOLMOD_L; }
static inline int mlm_cholmod_Lt(void) { return CHOLMOD_Lt; }
static inline int mlm_cholmod_P(void) { return CHOLMOD_P; }
static inline int mlm_cholmod_Pt(void) { return CHOLMOD_Pt; }
static inline int mlm_cholmod_natural(void) { return CHOLMOD_NATURAL; }
static inline int mlm_cholmod_amd(void) { return CHOLMOD_AMD; }
static inline int mlm_cholmod_metis(void) { return CHOLMOD_METIS; }
static inline int mlm_cholmod_given(void) { return CHOLMOD_GIVEN; }
static inline int mlm_cholmod_supernodal(void) { return CHOLMOD_SUPERNODAL; }
static inline int mlm_cholmod_simplicial(void) { return CHOLMOD_SIMPLICIAL; }
static inline int mlm_cholmod_auto(void) { return CHOLMOD_AUTO; }
static inline int mlm_cholmod_ok(void) { return CHOLMOD_OK; }
/* Common->method[i]: an array, which Swift imports as a tuple. */
static inline struct cholmod_method_struct *mlm_cholmod_method(cholmod_common *c, int i) { return &c->method[i]; }
static inline int mlm_cholmod_not_posdef(void) { return CHOLMOD_NOT_POSDEF; }

/* LAPACK/BLAS (OpenBLAS, the library CHOLMOD's supernodal kernels call) for dense Schur complements. */
void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info);
void dtrsm_(const char *side, const char *uplo, const char *transa, const char *diag, const int *m, const int *n,
            const double *alpha, const double *a, const int *lda, double *b, const int *ldb);
void dsyrk_(const char *uplo, const char *trans, const int *n, const int *k, const double *alpha,
            const double *a, const int *lda, const double *beta, double *c, const int *ldc);
void dpotri_(const char *uplo, const int *n, double *a, const int *lda, int *info);
void dtrtri_(const char *uplo, const char *diag, const int *n, double *a, const int *lda, int *info);
void dtrmm_(const char *side, const char *uplo, const char *transa, const char *diag, const int *m, const int *n,
            const double *alpha, const double *a, const int *lda, double *b, const int *ldb);
void dgemm_(const char *transa, const char *transb, const int *m, const int *n, const int *k, const double *alpha,
            const double *a, const int *lda, const double *b, const int *ldb, const double *beta, double *c, const int *ldc);
/* Eigenvalues and vectors of a symmetric tridiagonal matrix (Lanczos quadrature of the iterative path). */
void dstev_(const char *jobz, const int *n, double *d, double *e, double *z, const int *ldz, double *work, int *info);
/* Eigenvalues and vectors of a small symmetric matrix (the F-tests' Var(Lβ̂)). */
void dsyev_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w, double *work,
            const int *lwork, int *info);
/* OpenBLAS's thread count (its dpotrf blocks, and so rounds, by the number of threads). */
void openblas_set_num_threads(int num_threads);
/* The kernel set OpenBLAS chose when it was loaded (OPENBLAS_CORETYPE or its CPU detection). */
char *openblas_get_corename(void);
/* libgomp (CHOLMOD's OpenMP): 0 makes every parallel region run on the calling thread alone. */
void omp_set_max_active_levels(int max_levels);
#endif
