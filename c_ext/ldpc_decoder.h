/* Layered sum-product LDPC syndrome decoder, float32, 8 frames per SIMD vector.
 *
 * The graph is prepared once per code by reconcile/ldpc_decoder.py (Decoder): shortened
 * variables removed, degree-one variables folded into their check ("fold"), the remaining
 * ("active") variables renumbered 0..n_act-1. All memory belongs to the caller; the decoder
 * has no global state and may run concurrently from several threads on distinct workspaces.
 */
#ifndef CVQKD_LDPC_DECODER_H
#define CVQKD_LDPC_DECODER_H

#include <stdint.h>

#define LDPC_LANES 8

typedef struct {
    int32_t n;               /* variables of the code (columns of H) */
    int32_t m;               /* checks of the code (rows of H) */
    int32_t n_act;           /* active variables (neither shortened nor folded) */
    const int32_t *act_var;  /* [n_act] original index of each active variable */
    /* all checks: their active edges (termination test, constants, folded outputs) */
    const int64_t *chk_ptr;  /* [m + 1] */
    const int32_t *chk_var;  /* active variable index of each edge */
    const int32_t *chk_fold; /* [m] folded (degree-one) variable of the check, or -1 */
    /* layered schedule: checks with >= 2 active edges, in processing order */
    int32_t n_sched;
    const int32_t *sched_check; /* [n_sched] original check index */
    const int64_t *sched_ptr;   /* [n_sched + 1] */
    const int32_t *sched_var;   /* active variable index of each scheduled edge */
    int32_t max_deg;            /* largest active degree of a scheduled check */
    /* checks with exactly one active edge: a constant message, applied once at start */
    int32_t n_const;
    const int32_t *const_check;
    /* checks tested for termination (all checks without a folded variable) */
    int32_t n_test;
    const int32_t *test_check;
} ldpc_graph;

/* Floats of workspace needed by one thread (includes alignment slack). */
int64_t ldpc_workspace_floats(const ldpc_graph *g);

/* SIMD paths: portable vector code (SSE2/NEON), AVX2, AVX2 with FMA contraction, and the
 * latter compiled for AVX-512VL (same 8-lane vectors and arithmetic, 32 registers). */
#define LDPC_SIMD_BEST 0
#define LDPC_SIMD_PORTABLE 1
#define LDPC_SIMD_AVX2 2
#define LDPC_SIMD_AVX2_FMA 3
#define LDPC_SIMD_AVX512 4

/* Best SIMD path this CPU supports (LDPC_SIMD_*). */
int ldpc_simd_level(void);

/* Decode `frames` frames.
 * The frames form one queue: each thread runs one group of LDPC_LANES lanes, and a lane whose
 * frame stops (syndrome matched, or max_iter passes) takes the next pending frame, so groups
 * stay full until the queue is empty; then a group with few busy lanes hands them to another
 * group and stops. A frame's outputs do not depend on the other frames, the thread count, or
 * which lane or group runs it.
 * llr:  [frames][n] float32, > 0 means bit 0; punctured positions must hold 0.
 * syn:  [frames][m] uint8 target syndrome (0/1).
 * work: threads * ldpc_workspace_floats(g) floats.
 * bits: [frames][n] uint8 output, must be zeroed by the caller (shortened bits stay 0).
 * converged: [frames] uint8, iterations: [frames] int32 (layered passes run until the
 * syndrome matched; max_iter if it never did).
 * llr_out: [frames][n] float32 posterior LLRs, or NULL (folded variables get NaN,
 * shortened +inf).
 * passes: NULL, or out: layered passes of LDPC_LANES lanes run, summed over the groups (the
 * CPU cost: each costs the same however many lanes hold a frame).
 * simd: LDPC_SIMD_*. Returns 0, or -1 on bad arguments (or a path this CPU lacks). */
int ldpc_decode(const ldpc_graph *g, const float *llr, const uint8_t *syn, int32_t frames,
                int32_t max_iter, int32_t threads, int32_t simd, float *work, uint8_t *bits,
                uint8_t *converged, int32_t *iterations, float *llr_out, int64_t *passes);

/* phi(x) = -ln(tanh(x/2)) on the decoder's clamped domain, for accuracy tests; 0 or -1. */
int ldpc_phi(const float *x, float *out, int64_t count, int32_t simd);

#endif
