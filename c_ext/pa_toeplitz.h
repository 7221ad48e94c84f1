/* Toeplitz hashing over GF(2) for privacy amplification (see pa_toeplitz.c and
 * docs/privacy-amplification.md). Bit convention: bit j of a vector is bit (j % 8) of byte
 * j / 8 (least significant bit first, numpy packbits(bitorder="little")). */
#ifndef CVQKD_PA_TOEPLITZ_H
#define CVQKD_PA_TOEPLITZ_H

#include <stdint.h>

/* Kernel selection for pa_toeplitz_hash / pa_modified_toeplitz_hash. */
#define PA_IMPL_AUTO 0     /* fastest available on this CPU */
#define PA_IMPL_PORTABLE 1 /* 4-bit-window software carry-less multiply (any CPU) */
#define PA_IMPL_PCLMUL 2   /* x86 PCLMULQDQ */
#define PA_IMPL_VPCLMUL 3  /* x86 AVX-512 VPCLMULQDQ (four products per instruction) */
#define PA_IMPL_PMULL 4    /* aarch64 (Linux) PMULL of the ARMv8 crypto extension */

/* Return codes. */
#define PA_OK 0
#define PA_ERR_ARG -1    /* bad sizes or an implementation this CPU lacks */
#define PA_ERR_NOMEM -2  /* allocation failed */

/* 1 if the kernel `impl` can run on this CPU, else 0. */
int pa_impl_available(int impl);

/* out = T x with T the m x n Toeplitz matrix T[i][j] = seed[i - j + n - 1] (n + m - 1 seed
 * bits). x: n bits in ceil(n/8) bytes; seed: n + m - 1 bits; out: ceil(m/8) bytes, the unused
 * high bits of its last byte are set to 0. Bits of x and seed beyond their lengths are
 * ignored. block_words and base_words (0 = automatic) fix the tiling, for tuning and tests. */
int pa_toeplitz_hash(const uint8_t *x, uint64_t n, const uint8_t *seed, uint8_t *out, uint64_t m,
                     int impl, uint64_t block_words, uint64_t base_words);

/* out = (T | I_m) x with T the m x (n - m) Toeplitz matrix above (n - 1 seed bits), i.e.
 * out = T x[0:n-m] xor x[n-m:n] (Hayashi and Tsurumaru, IEEE TIT 62, 2213 (2016)). m <= n. */
int pa_modified_toeplitz_hash(const uint8_t *x, uint64_t n, const uint8_t *seed, uint8_t *out,
                              uint64_t m, int impl, uint64_t block_words, uint64_t base_words);

/* Peak heap bytes the hash allocates for these sizes (block_words, base_words as above). */
uint64_t pa_scratch_bytes(uint64_t n, uint64_t m, uint64_t block_words, uint64_t base_words);

#endif
