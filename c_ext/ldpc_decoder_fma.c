/* The decoder kernel built for AVX2 with FMA contraction (a*b + c fused): faster, but rounds
 * differently from the portable and AVX2 builds. Chosen at run time by ldpc_decoder.c. */
#include "ldpc_decoder.h"

#if defined(__x86_64__)
#pragma GCC target("avx2,fma")
#pragma GCC optimize("fp-contract=fast")

#include "ldpc_kernel.h"

int64_t ldpc_group_avx2fma(const job *jb, float *work);
void ldpc_phi_avx2fma(const float *x, float *out, int64_t count);

int64_t ldpc_group_avx2fma(const job *jb, float *work) { return group_impl(jb, work); }

void ldpc_phi_avx2fma(const float *x, float *out, int64_t count) { phi_impl(x, out, count); }
#else
typedef int ldpc_decoder_fma_unused; /* ISO C forbids an empty translation unit */
#endif
