#ifndef MULTILEVEL_CMPI_SHIM_H
#define MULTILEVEL_CMPI_SHIM_H
#include <mpi.h>

/* OpenMPI's handles are macros over global structs: wrap them for Swift. */
static inline MPI_Comm mlm_mpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Datatype mlm_mpi_long(void) { return MPI_LONG; }
static inline MPI_Datatype mlm_mpi_char(void) { return MPI_CHAR; }
static inline int mlm_mpi_any_source(void) { return MPI_ANY_SOURCE; }
#endif
