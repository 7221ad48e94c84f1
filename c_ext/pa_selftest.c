/* Self-test of pa_toeplitz.c without Python, for other architectures (tests/test_privacy_amp.py
 * cross-compiles it for aarch64 and runs it under qemu-user when those tools exist).
 *
 * Every kernel the CPU has, with forced tilings, against a bit-by-bit evaluation of the
 * Toeplitz matrix; then all kernels against each other on a large block.
 * Build: cc -O2 -Ic_ext c_ext/pa_selftest.c c_ext/pa_toeplitz.c. Prints "N passed, F failed". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pa_toeplitz.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15u;

static uint64_t next_u64(void) { /* xorshift64*: test data only */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Du;
}

static int bit(const uint8_t *v, uint64_t i) { return (v[i >> 3] >> (i & 7)) & 1; }

static void random_bytes(uint8_t *v, uint64_t nbytes) {
    for (uint64_t i = 0; i < nbytes; i++) v[i] = (uint8_t)next_u64();
}

/* y_i = xor_j s[i - j + ncols - 1] x_j (+ x[ncols + i] for the modified family) */
static void direct(const uint8_t *x, uint64_t ncols, const uint8_t *s, uint64_t m, int ident,
                   uint8_t *y) {
    memset(y, 0, (m + 7) / 8);
    for (uint64_t i = 0; i < m; i++) {
        int acc = ident ? bit(x, ncols + i) : 0;
        for (uint64_t j = 0; j < ncols; j++) acc ^= bit(s, i - j + ncols - 1) & bit(x, j);
        y[i >> 3] |= (uint8_t)(acc << (i & 7));
    }
}

int main(void) {
    const int impls[] = {PA_IMPL_PORTABLE, PA_IMPL_PCLMUL, PA_IMPL_VPCLMUL, PA_IMPL_PMULL};
    const uint64_t bases[] = {0, 1, 3, 8, 31};
    long passed = 0, failed = 0;
    for (int impl_i = 0; impl_i < 4; impl_i++)
        if (pa_impl_available(impls[impl_i])) printf("kernel %d available\n", impls[impl_i]);
    for (int trial = 0; trial < 150; trial++) {
        uint64_t n = 1 + next_u64() % 1500;
        uint64_t m = trial < 20 ? (trial % 2 ? n : 1) : 1 + next_u64() % n;
        uint8_t *x = malloc((n + 7) / 8), *s = malloc((n + m) / 8 + 1);
        uint8_t *want = malloc((m + 7) / 8), *got = malloc((m + 7) / 8);
        random_bytes(x, (n + 7) / 8);
        random_bytes(s, (n + m) / 8 + 1);
        for (int fam = 0; fam < 2; fam++) {
            if (fam == 0) direct(x, n, s, m, 0, want);
            else direct(x, n - m, s, m, 1, want);
            if (m % 8) want[(m - 1) / 8] &= (uint8_t)((1u << (m % 8)) - 1);
            for (int impl_i = 0; impl_i < 4; impl_i++) {
                if (!pa_impl_available(impls[impl_i])) continue;
                for (int b = 0; b < 5; b++) {
                    int rc = fam == 0
                        ? pa_toeplitz_hash(x, n, s, got, m, impls[impl_i], 0, bases[b])
                        : pa_modified_toeplitz_hash(x, n, s, got, m, impls[impl_i], 0, bases[b]);
                    if (rc == PA_OK && memcmp(got, want, (m + 7) / 8) == 0) {
                        passed++;
                    } else {
                        failed++;
                        printf("FAIL n=%llu m=%llu family=%d kernel=%d base=%llu rc=%d\n",
                               (unsigned long long)n, (unsigned long long)m, fam, impls[impl_i],
                               (unsigned long long)bases[b], rc);
                    }
                }
            }
        }
        free(x), free(s), free(want), free(got);
    }
    /* a large block: every kernel gives the portable kernel's output */
    uint64_t n = 400037, m = 41011;
    uint8_t *x = malloc((n + 7) / 8), *s = malloc((n + m) / 8 + 1);
    uint8_t *ref = malloc((m + 7) / 8), *got = malloc((m + 7) / 8);
    random_bytes(x, (n + 7) / 8);
    random_bytes(s, (n + m) / 8 + 1);
    pa_toeplitz_hash(x, n, s, ref, m, PA_IMPL_PORTABLE, 0, 0);
    for (int impl_i = 1; impl_i < 4; impl_i++) {
        if (!pa_impl_available(impls[impl_i])) continue;
        int rc = pa_toeplitz_hash(x, n, s, got, m, impls[impl_i], 0, 0);
        if (rc == PA_OK && memcmp(got, ref, (m + 7) / 8) == 0) {
            passed++;
        } else {
            failed++;
            printf("FAIL large block, kernel %d\n", impls[impl_i]);
        }
    }
    free(x), free(s), free(ref), free(got);
    printf("%ld passed, %ld failed\n", passed, failed);
    return failed != 0;
}
