/* Layered sum-product LDPC syndrome decoder (float32, 8 frames per vector, pthreads).
 *
 * Algorithm: belief propagation in the "phi" (log-tanh) domain, phi(x) = -ln tanh(x/2) =
 * log1p(2 / expm1(x)), an involution on x > 0 (Gallager 1963; Richardson & Urbanke, Modern
 * Coding Theory, 2008, ch. 4). For a check c with incoming variable-to-check messages t_j,
 *     |r_i| = phi( sum_{j != i} phi(|t_j|) ),   sign r_i = (1 - 2 s_c) prod_{j != i} sign t_j,
 * with s_c the target syndrome bit (coset decoding). The exclusive sums come from forward and
 * backward partial sums (no subtraction, so no cancellation). The schedule is layered
 * (row-by-row, "serial C"; Hocevar, SiPS 2004): t_j = L_v - r_old, then L_v = t_j + r_new.
 *
 * phi is evaluated branch-free in float32 from e^-x = 2^k (1 + p(r)) (Cody-Waite reduction,
 * p(r) = r q(r) with q a degree-3 minimax fit of expm1(r)/r on |r| <= ln2/2, relative error
 * 2.1e-5): for e^-x <= 1/3, phi = 2 atanh(e^-x); otherwise phi = ln((2 + w)/(-w)) with
 * w = expm1(-x), the exponent split off exactly and the rest by 2 atanh(s), |s| < 1/3, with
 * 2 atanh(s)/s a degree-2 minimax polynomial in s^2 (relative error 7.2e-6). Maximum relative
 * error of phi: 2e-5 (measured 1.58e-5 on 8e6 points; tests/test_ldpc_decoder.py; the fits:
 * docs/ldpc_phi_fit.py). Belief propagation needs far less (hardware decoders use 5-6-bit
 * tables); the earlier degree-7 / s^13 evaluation (2e-7) cost ~20 % more decoder time and gave
 * the same decisions and the same iteration count on every one of 256 codewords at the link's
 * operating point (SNR 0.40, beta 0.908 and 0.918; docs/performance.md). Arguments are clamped to [PHI_LO, PHI_HI] =
 * [phi(40), 40], which phi maps onto itself, so messages are limited to |r| <= 40; sums of
 * phi values are >= PHI_LO already and are clamped above only.
 *
 * Frames are interleaved 8 to a vector (GCC/Clang vector extensions: AVX2 on x86-64 when the
 * CPU has it, chosen at run time, two SSE halves otherwise, NEON on aarch64). FMA contraction
 * is disabled except in the AVX2+FMA build (ldpc_decoder_fma.c) and the same kernel compiled
 * for AVX-512VL (ldpc_decoder_avx512.c: 32 registers, so phi's NP = 4 interleaved evaluations
 * do not spill; the same results as AVX2+FMA, tested), so the portable and AVX2 paths give
 * bit-identical results; each path is deterministic. Lanes never interact,
 * and a frame's output is frozen at the first iteration its syndrome matches, so the result
 * of a frame does not depend on its batch-mates or on the thread count.
 *
 * Lane refill: the frames of a call form a queue (an atomic index shared by the threads);
 * each thread runs one group of 8 lanes. After every pass the pending lanes are tested; a
 * lane whose syndrome matches (or that has run max_iter passes) writes its frame and loads
 * the next pending one (same initial state as a fresh group, tested before its first pass),
 * so a group runs full until the queue is empty and costs about the sum of its frames'
 * passes / 8 plus the last frames' tail, not 8 x the slowest frame of each 8. Idle lanes
 * (queue empty, or fewer frames than lanes) keep computing on defined values. Once the queue
 * is empty, a group left with <= 4 busy lanes hands them to the other groups (the lane's
 * whole state is copied into a free lane of a group at its next pass boundary) and stops,
 * unless it is the last group running: the threads' tails merge instead of each running its
 * own (2 threads on 16 frames: about the passes of one thread, at about half the latency).
 *
 * Graph preparation (reconcile/ldpc_decoder.py): shortened variables are removed; a degree-one
 * variable is folded into its check as a constant prior (its bit is solved from the check's
 * parity at the end, and that check needs no termination test); a check left with a single
 * variable sends a constant message, added once before the first pass; a check whose folded
 * variable is punctured sends only zero messages and is skipped. Early termination: after
 * every pass the hard decisions are tested against the target syndrome (all checks without a
 * folded variable); the test stops at the first failing check once every pending lane fails.
 */
#include "ldpc_decoder.h"

#include <pthread.h>

#include "ldpc_kernel.h"

int64_t ldpc_workspace_floats(const ldpc_graph *g) {
    return W * ((int64_t)g->n_act + g->sched_ptr[g->n_sched] + g->m + 2 * (int64_t)g->n_sched +
                3 * ((int64_t)g->max_deg + NP)) +
           W;
}

static int64_t group_portable(const job *jb, float *work) { return group_impl(jb, work); }

static void phi_portable(const float *x, float *out, int64_t count) { phi_impl(x, out, count); }

#if defined(__x86_64__)
#define HAVE_AVX2_PATH 1
__attribute__((target("avx2"))) static int64_t group_avx2(const job *jb, float *work) {
    return group_impl(jb, work);
}
__attribute__((target("avx2"))) static void phi_avx2(const float *x, float *out, int64_t count) {
    phi_impl(x, out, count);
}
/* ldpc_decoder_fma.c: the same kernel with FMA contraction; ldpc_decoder_avx512.c: that one
 * compiled for AVX-512VL (same vectors and arithmetic, more registers) */
int64_t ldpc_group_avx2fma(const job *jb, float *work);
void ldpc_phi_avx2fma(const float *x, float *out, int64_t count);
int64_t ldpc_group_avx512(const job *jb, float *work);
void ldpc_phi_avx512(const float *x, float *out, int64_t count);
#endif

int ldpc_simd_level(void) {
#ifdef HAVE_AVX2_PATH
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
        __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw"))
        return LDPC_SIMD_AVX512;
    if (__builtin_cpu_supports("avx2"))
        return __builtin_cpu_supports("fma") ? LDPC_SIMD_AVX2_FMA : LDPC_SIMD_AVX2;
#endif
    return LDPC_SIMD_PORTABLE;
}

typedef int64_t (*group_fn)(const job *, float *);
typedef void (*phi_fn)(const float *, float *, int64_t);

static int resolve(int32_t simd) { return simd == LDPC_SIMD_BEST ? ldpc_simd_level() : simd; }

static group_fn pick_group(int level) {
#ifdef HAVE_AVX2_PATH
    if (level == LDPC_SIMD_AVX512) return ldpc_group_avx512;
    if (level == LDPC_SIMD_AVX2_FMA) return ldpc_group_avx2fma;
    if (level == LDPC_SIMD_AVX2) return group_avx2;
#endif
    (void)level;
    return group_portable;
}

int ldpc_phi(const float *x, float *out, int64_t count, int32_t simd) {
    const int level = resolve(simd);
    if (level < LDPC_SIMD_PORTABLE || level > ldpc_simd_level()) return -1;
    phi_fn fn = phi_portable;
#ifdef HAVE_AVX2_PATH
    if (level == LDPC_SIMD_AVX512) fn = ldpc_phi_avx512;
    if (level == LDPC_SIMD_AVX2_FMA) fn = ldpc_phi_avx2fma;
    if (level == LDPC_SIMD_AVX2) fn = phi_avx2;
#endif
    fn(x, out, count);
    return 0;
}

typedef struct {
    const job *jb;
    group_fn fn;
    float *work;
    int64_t passes; /* out: layered passes the thread's group ran */
} worker_arg;

static void *worker(void *p) {
    worker_arg *wa = (worker_arg *)p;
    wa->passes = wa->fn(wa->jb, wa->work);
    return NULL;
}

#define MAX_THREADS 64

int ldpc_decode(const ldpc_graph *g, const float *llr, const uint8_t *syn, int32_t frames,
                int32_t max_iter, int32_t threads, int32_t simd, float *work, uint8_t *bits,
                uint8_t *converged, int32_t *iterations, float *llr_out, int64_t *passes) {
    if (!g || !llr || !syn || !work || !bits || !converged || !iterations) return -1;
    if (frames < 0 || max_iter < 0 || threads < 1 || threads > MAX_THREADS) return -1;
    const int level = resolve(simd);
    if (level < LDPC_SIMD_PORTABLE || level > ldpc_simd_level()) return -1;
    int64_t next = 0;
    pool pl = {.live = 0, .orphans = 0};
    const job jb = {g, llr, syn, frames, max_iter, bits, converged, iterations, llr_out, &next,
                    &pl};
    const int64_t groups = ((int64_t)frames + W - 1) / W;
    const int64_t stride = ldpc_workspace_floats(g);
    const int nt = threads < groups ? threads : (int)groups;
    if (passes) *passes = 0;
    if (nt < 1) return 0;
    worker_arg args[MAX_THREADS];
    pthread_t tid[MAX_THREADS];
    const group_fn fn = pick_group(level);
    for (int t = 0; t < nt; ++t) args[t] = (worker_arg){&jb, fn, work + t * stride, 0};
    if (pthread_mutex_init(&pl.lock, NULL) != 0) return -1;
    pl.live = nt; /* groups that will run: corrected below if a thread cannot start */
    int started = 0;
    for (int t = 1; t < nt; ++t) {
        if (pthread_create(&tid[t], NULL, worker, &args[t]) != 0) break;
        ++started;
    }
    if (started < nt - 1) {
        pthread_mutex_lock(&pl.lock);
        pl.live -= nt - 1 - started;
        pthread_mutex_unlock(&pl.lock);
    }
    worker(&args[0]);
    for (int t = 1; t <= started; ++t) pthread_join(tid[t], NULL);
    pthread_mutex_destroy(&pl.lock);
    if (passes)
        for (int t = 0; t <= started; ++t) *passes += args[t].passes;
    return 0;
}
