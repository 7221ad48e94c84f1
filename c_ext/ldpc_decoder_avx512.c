/* The AVX2+FMA decoder kernel compiled for AVX-512VL: the same 256-bit vectors and the same
 * arithmetic (FMA contraction as in ldpc_decoder_fma.c), but 32 vector registers instead of 16
 * (phi's interleaved evaluations no longer spill) and three-input logic for the selects.
 * Chosen at run time by ldpc_decoder.c on CPUs with AVX-512 F, VL, DQ and BW. */
#include "ldpc_decoder.h"

#if defined(__x86_64__)
#pragma GCC target("avx2,fma,avx512f,avx512vl,avx512dq,avx512bw")
#pragma GCC optimize("fp-contract=fast")

#include "ldpc_kernel.h"

int64_t ldpc_group_avx512(const job *jb, float *work);
void ldpc_phi_avx512(const float *x, float *out, int64_t count);

int64_t ldpc_group_avx512(const job *jb, float *work) { return group_impl(jb, work); }

void ldpc_phi_avx512(const float *x, float *out, int64_t count) { phi_impl(x, out, count); }
#else
typedef int ldpc_decoder_avx512_unused; /* ISO C forbids an empty translation unit */
#endif
