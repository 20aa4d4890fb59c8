#ifndef MULTILEVEL_CHDF5_SHIM_H
#define MULTILEVEL_CHDF5_SHIM_H
#include <hdf5.h>

/* HDF5's type and flag macros expand to globals (or calls) that Swift cannot import.
   H5open() must have run first: the _g globals are -1 before it. */
static inline hid_t mlm_h5t_native_double(void) { H5open(); return H5T_NATIVE_DOUBLE; }
static inline hid_t mlm_h5t_native_int64(void) { H5open(); return H5T_NATIVE_INT64; }
static inline hid_t mlm_h5t_native_int32(void) { H5open(); return H5T_NATIVE_INT32; }
static inline hid_t mlm_h5t_c_s1(void) { H5open(); return H5T_C_S1; }
static inline hid_t mlm_h5t_ieee_f64le(void) { H5open(); return H5T_IEEE_F64LE; }
static inline hid_t mlm_h5t_std_i64le(void) { H5open(); return H5T_STD_I64LE; }
static inline hid_t mlm_h5t_native_int8(void) { H5open(); return H5T_NATIVE_INT8; }
static inline hid_t mlm_h5t_native_uint16(void) { H5open(); return H5T_NATIVE_UINT16; }
static inline hid_t mlm_h5t_native_float(void) { H5open(); return H5T_NATIVE_FLOAT; }
static inline hid_t mlm_h5t_native_b8(void) { H5open(); return H5T_NATIVE_B8; }
static inline hid_t mlm_h5t_native_uint8(void) { H5open(); return H5T_NATIVE_UINT8; }
static inline hid_t mlm_h5p_group_create(void) { H5open(); return H5P_GROUP_CREATE; }
static inline hid_t mlm_h5p_link_create(void) { H5open(); return H5P_LINK_CREATE; }
static inline size_t mlm_h5t_variable(void) { return H5T_VARIABLE; }
static inline unsigned mlm_h5f_acc_rdonly(void) { return H5F_ACC_RDONLY; }
static inline unsigned mlm_h5f_acc_trunc(void) { return H5F_ACC_TRUNC; }
static inline hid_t mlm_h5p_default(void) { return H5P_DEFAULT; }
static inline hid_t mlm_h5p_dataset_create(void) { H5open(); return H5P_DATASET_CREATE; }
static inline hid_t mlm_h5s_all(void) { return H5S_ALL; }
static inline hsize_t mlm_h5s_unlimited(void) { return H5S_UNLIMITED; }
/* Silence HDF5's own stack traces on stderr: the caller reports one clear line. */
static inline void mlm_h5_silence(void) { H5open(); H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }
#endif
