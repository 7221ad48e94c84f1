"""cffi build of `reconcile._pa`: Toeplitz hashing for privacy amplification.

The PCLMULQDQ kernel is compiled with a per-function target attribute and chosen at run time,
so the default flags stay portable (any x86_64, aarch64 with the software kernel).
Run as a script to compile in place: `.venv/bin/python c_ext/build_pa.py`.
"""

import platform
from pathlib import Path

from cffi import FFI

ROOT = Path(__file__).resolve().parent.parent

ffibuilder = FFI()
ffibuilder.cdef(
    """
    int pa_impl_available(int impl);
    int pa_toeplitz_hash(const uint8_t *x, uint64_t n, const uint8_t *seed, uint8_t *out,
                         uint64_t m, int impl, uint64_t block_words, uint64_t base_words);
    int pa_modified_toeplitz_hash(const uint8_t *x, uint64_t n, const uint8_t *seed,
                                  uint8_t *out, uint64_t m, int impl, uint64_t block_words,
                                  uint64_t base_words);
    uint64_t pa_scratch_bytes(uint64_t n, uint64_t m, uint64_t block_words,
                              uint64_t base_words);
    """
)

_flags = ["-O3", "-std=c11", "-Wall", "-Wextra"]
if platform.machine().lower() in ("x86_64", "amd64"):
    _flags.append("-march=x86-64-v2")

ffibuilder.set_source(
    "reconcile._pa",
    '#include "pa_toeplitz.h"',
    sources=["c_ext/pa_toeplitz.c"],  # relative to the project root (setup.py's directory)
    include_dirs=["c_ext"],
    extra_compile_args=_flags,
)

if __name__ == "__main__":
    # same file name as `setup.py build_ext` gives, so no stale copy can shadow it
    ffibuilder.compile(tmpdir=str(ROOT), verbose=False, target="_pa.abi3.so")
