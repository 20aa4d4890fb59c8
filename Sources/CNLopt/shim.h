#ifndef MULTILEVEL_CNLOPT_SHIM_H
#define MULTILEVEL_CNLOPT_SHIM_H
#include <nlopt.h>
#endif
