/* Self-test of the LDPC decoder without Python, for other architectures
 * (tests/test_ldpc_decoder.py builds it natively and, when the tools exist, cross-compiles it
 * for aarch64 and runs it under qemu-user).
 *
 * A random (3,6)-regular code of 2000 variables, 20 frames of BI-AWGN LLRs at noise levels
 * around its threshold (some frames converge, some run to the cap): every SIMD path this CPU
 * has, with 1, 2 and 3 threads (lane refill, tails handed between groups) and one frame per
 * call, must give the same bits and iteration counts per frame as the same path with 1 thread.
 * Build: cc -O2 -pthread -Ic_ext c_ext/ldpc_selftest.c c_ext/ldpc_decoder*.c -lm.
 * Prints one line per path and then "N passed, F failed". */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ldpc_decoder.h"

enum { NV = 2000, DV = 3, DC = 6, NC = NV * DV / DC, FRAMES = 20, CAP = 30 };

static uint64_t rng_state = 0x9E3779B97F4A7C15u;

static uint64_t next_u64(void) { /* xorshift64*: test data only */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Du;
}

static double uniform(void) { return ((double)(next_u64() >> 11) + 0.5) * 0x1.0p-53; }

static double gauss(void) { return sqrt(-2.0 * log(uniform())) * cos(6.283185307179586 * uniform()); }

static int32_t chk_var[NV * DV], act_var[NV], chk_fold[NC], checks[NC];
static int64_t chk_ptr[NC + 1];
static float llr[FRAMES * NV];
static uint8_t syn[FRAMES * NC], word[FRAMES * NV];

static void make_code_and_frames(void) {
    int32_t socket[NV * DV]; /* socket s (check s / DC) holds variable socket[s] */
    for (int s = 0; s < NV * DV; ++s) socket[s] = s / DV;
    for (int s = NV * DV - 1; s > 0; --s) {
        const int j = (int)(next_u64() % (uint64_t)(s + 1));
        const int32_t t = socket[s];
        socket[s] = socket[j];
        socket[j] = t;
    }
    memcpy(chk_var, socket, sizeof socket); /* repeated variables in a check: harmless here */
    for (int c = 0; c <= NC; ++c) chk_ptr[c] = (int64_t)c * DC;
    for (int c = 0; c < NC; ++c) chk_fold[c] = -1, checks[c] = c;
    for (int v = 0; v < NV; ++v) act_var[v] = v;
    for (int f = 0; f < FRAMES; ++f) {
        const double sigma = 0.80 + 0.006 * f;
        for (int v = 0; v < NV; ++v) {
            word[f * NV + v] = (uint8_t)(next_u64() & 1u);
            const double y = 1.0 - 2.0 * word[f * NV + v] + sigma * gauss();
            llr[f * NV + v] = (float)(2.0 * y / (sigma * sigma));
        }
        for (int c = 0; c < NC; ++c) {
            uint8_t p = 0;
            for (int64_t e = chk_ptr[c]; e < chk_ptr[c + 1]; ++e) p ^= word[f * NV + chk_var[e]];
            syn[f * NC + c] = p;
        }
    }
}

int main(void) {
    make_code_and_frames();
    const ldpc_graph g = {NV, NC, NV, act_var, chk_ptr, chk_var, chk_fold, NC, checks,
                          chk_ptr, chk_var, DC, 0, NULL, NC, checks};
    const int64_t stride = ldpc_workspace_floats(&g);
    float *work = malloc(sizeof(float) * (size_t)stride * 3);
    static uint8_t bits[FRAMES * NV], ref_bits[FRAMES * NV], conv[FRAMES];
    static int32_t iters[FRAMES], ref_iters[FRAMES];
    int passed = 0, failed = 0;
    if (!work) return 2;
    for (int simd = LDPC_SIMD_PORTABLE; simd <= ldpc_simd_level(); ++simd) {
        int converged = 0, capped = 0;
        for (int run = 0; run < 4; ++run) { /* 1, 2, 3 threads; then one frame per call */
            memset(bits, 0, sizeof bits);
            if (run < 3) {
                if (ldpc_decode(&g, llr, syn, FRAMES, CAP, run + 1, simd, work, bits, conv, iters,
                                NULL, NULL) != 0)
                    return 2;
            } else {
                for (int f = 0; f < FRAMES; ++f)
                    if (ldpc_decode(&g, llr + f * NV, syn + f * NC, 1, CAP, 1, simd, work,
                                    bits + f * NV, conv + f, iters + f, NULL, NULL) != 0)
                        return 2;
            }
            if (run == 0) {
                memcpy(ref_bits, bits, sizeof bits);
                memcpy(ref_iters, iters, sizeof iters);
                for (int f = 0; f < FRAMES; ++f) {
                    converged += conv[f] && !memcmp(bits + f * NV, word + f * NV, NV);
                    capped += iters[f] == CAP;
                }
                continue;
            }
            for (int f = 0; f < FRAMES; ++f) {
                const int same = !memcmp(bits + f * NV, ref_bits + f * NV, NV) &&
                                 iters[f] == ref_iters[f];
                passed += same;
                failed += !same;
            }
        }
        /* the data must exercise both outcomes, or the comparison proves little */
        const int mixed = converged >= 3 && capped >= 3;
        passed += mixed;
        failed += !mixed;
        printf("path %d: %d of %d frames decoded, %d at the cap\n", simd, converged, FRAMES,
               capped);
    }
    free(work);
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
