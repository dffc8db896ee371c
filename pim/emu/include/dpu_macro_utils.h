/* Preprocessor helpers for the FOREACH macros (2- and 3-argument forms). */
#ifndef DPU_MACRO_UTILS_H
#define DPU_MACRO_UTILS_H

#define _DPU_CONCAT_(a, b) a##b
#define _DPU_CONCAT(a, b) _DPU_CONCAT_(a, b)
#define _DPU_NARGS_SELECT_(_1, _2, _3, variant, ...) variant
/* 2 arguments -> X (no index), 3 arguments -> I (with running index). */
#define _DPU_FOREACH_VARIANT(...) _DPU_NARGS_SELECT_(__VA_ARGS__, I, X, _ERROR_)

#endif /* DPU_MACRO_UTILS_H */
