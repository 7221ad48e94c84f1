"""cffi build of the LDPC decoder: `reconcile._ldpc` (see c_ext/ldpc_decoder.h)."""

from __future__ import annotations

import platform
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

CDEF = """
typedef struct {
    int32_t n;
    int32_t m;
    int32_t n_act;
    const int32_t *act_var;
    const int64_t *chk_ptr;
    const int32_t *chk_var;
    const int32_t *chk_fold;
    int32_t n_sched;
    const int32_t *sched_check;
    const int64_t *sched_ptr;
    const int32_t *sched_var;
    int32_t max_deg;
    int32_t n_const;
    const int32_t *const_check;
    int32_t n_test;
    const int32_t *test_check;
} ldpc_graph;

int64_t ldpc_workspace_floats(const ldpc_graph *g);
int ldpc_simd_level(void);
int ldpc_decode(const ldpc_graph *g, const float *llr, const uint8_t *syn, int32_t frames,
                int32_t max_iter, int32_t threads, int32_t simd, float *work, uint8_t *bits,
                uint8_t *converged, int32_t *iterations, float *llr_out, int64_t *passes);
int ldpc_phi(const float *x, float *out, int64_t count, int32_t simd);
"""

_FLAGS = ["-O3", "-std=gnu11", "-fno-math-errno", "-Wno-psabi", "-pthread"]
if platform.machine().lower() in ("x86_64", "amd64"):
    # AVX2 (+FMA, + AVX-512VL) is chosen at run time (ldpc_simd_level). No FMA contraction
    # outside ldpc_decoder_fma.c and ldpc_decoder_avx512.c, so the portable and AVX2 paths agree
    # bit for bit.
    _FLAGS += ["-march=x86-64-v2", "-ffp-contract=off"]
else:
    _FLAGS.append("-ffp-contract=fast")  # aarch64: NEON fused multiply-add in the one path

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "reconcile._ldpc",
    '#include "ldpc_decoder.h"',
    sources=[str((HERE / f).relative_to(ROOT)) for f in ("ldpc_decoder.c", "ldpc_decoder_fma.c",
                                                           "ldpc_decoder_avx512.c")],
    include_dirs=[str(HERE.relative_to(ROOT))],
    extra_compile_args=_FLAGS,
    extra_link_args=["-pthread"],
)

if __name__ == "__main__":
    import os

    os.chdir(ROOT)
    # the same file name as `setup.py build_ext --inplace` (limited API), so neither build can
    # leave a stale module that shadows the other
    ffibuilder.compile(tmpdir=str(ROOT), verbose=False, target="_ldpc.abi3.so")
