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
 * degree-7 Taylor expm1 on |r| <= ln2/2): for e^-x < 1/3, phi = 2 atanh(e^-x); otherwise
 * phi = ln((2 + w)/(-w)) with w = expm1(-x), the exponent split off exactly and the rest by
 * 2 atanh(s), |s| < 1/3 (odd series to s^13). Measured accuracy: tests/test_ldpc_decoder.py
 * and docs/performance.md. Arguments are clamped to [PHI_LO, PHI_HI] = [phi(40), 40], which
 * phi maps onto itself, so messages are limited to |r| <= 40.
 *
 * Frames are interleaved 8 to a vector (GCC/Clang vector extensions: AVX2 on x86-64 when the
 * CPU has it, chosen at run time, two SSE halves otherwise, NEON on aarch64). FMA contraction
 * is disabled at build time, so every path gives bit-identical results. Lanes never interact,
 * and a frame's output is frozen at the first iteration its syndrome matches, so the result
 * of a frame does not depend on its batch-mates, on the thread count or on the SIMD path.
 */
#include "ldpc_decoder.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

#define W LDPC_LANES
#define ALWAYS static inline __attribute__((always_inline))
#define VF(x) ((v8f){(x), (x), (x), (x), (x), (x), (x), (x)})
#define VI(x) ((v8i){(x), (x), (x), (x), (x), (x), (x), (x)})
#define SIGN_BIT ((int32_t)0x80000000)

#define PHI_HI 40.0f
#define PHI_LO 8.4967e-18f /* phi(40) = log1p(2/expm1(40)) */
/* message of a check whose only other variable is shortened away: the bit is known */
#define LLR_HARD 1000.0f

ALWAYS v8f vsel(v8i mask, v8f a, v8f b) { return (v8f)(((v8i)a & mask) | ((v8i)b & ~mask)); }

ALWAYS v8f vclamp(v8f x) {
    x = vsel(x < VF(PHI_LO), VF(PHI_LO), x);
    return vsel(x > VF(PHI_HI), VF(PHI_HI), x);
}

/* phi(x) = -ln tanh(x/2) for x in [PHI_LO, PHI_HI]. */
ALWAYS v8f vphi(v8f x) {
    const v8f y = -x;
    const v8f magic = VF(12582912.0f); /* 1.5 * 2^23: adding it rounds to an integer */
    const v8f kf = (y * VF(1.44269504f) + magic) - magic;
    const v8i k = __builtin_convertvector(kf, v8i);
    const v8f r = (y - kf * VF(0.693145751953125f)) - kf * VF(1.4286068e-06f);
    const v8f p =
        r * (VF(1.0f) +
             r * (VF(0.5f) +
                  r * (VF(1.0f / 6) +
                       r * (VF(1.0f / 24) +
                            r * (VF(1.0f / 120) + r * (VF(1.0f / 720) + r * VF(1.0f / 5040)))))));
    const v8f two_k = (v8f)((k + VI(127)) << 23);
    const v8f u = two_k + two_k * p;         /* e^-x */
    const v8f w = two_k * p + (two_k - VF(1.0f)); /* expm1(-x) */
    /* large-argument form: (2 + w)/(-w) = 2^e * nn / d1 with nn = 2 + w in [4/3, 2) */
    const v8f nn = VF(2.0f) + w;
    const v8i db = (v8i)(-w);
    const v8i be = ((db >> 23) & VI(0xff)) - VI(127);
    const v8f d1 = (v8f)((db & VI(0x7fffff)) | VI(0x3f800000));
    const v8i small = u < VF(1.0f / 3);
    const v8f s = vsel(small, u, nn - d1) / vsel(small, VF(1.0f), nn + d1);
    const v8f e = vsel(small, VF(0.0f), __builtin_convertvector(-be, v8f));
    const v8f s2 = s * s;
    const v8f q =
        s * (VF(2.0f) +
             s2 * (VF(2.0f / 3) +
                   s2 * (VF(2.0f / 5) +
                         s2 * (VF(2.0f / 7) +
                               s2 * (VF(2.0f / 9) + s2 * (VF(2.0f / 11) + s2 * VF(2.0f / 13)))))));
    return e * VF(0.693147181f) + q;
}

ALWAYS uint32_t lane_mask(v8i v) {
    uint32_t mask = 0;
    for (int l = 0; l < W; ++l) mask |= ((uint32_t)v[l] >> 31) << l;
    return mask;
}

typedef struct {
    float *L;       /* [n_act][W] posterior LLRs */
    float *R;       /* [sched edges][W] check-to-variable messages */
    int32_t *S;     /* [m][W] syndrome bit in the sign position */
    int32_t *csign; /* [n_sched][W] syndrome sign xor folded-variable sign */
    float *cprior;  /* [n_sched][W] phi(|LLR|) of the folded variable, or 0 */
    float *T, *A, *P; /* [max_deg][W] scratch of one check */
} workspace;

static workspace carve(const ldpc_graph *g, float *base) {
    workspace ws;
    float *p = (float *)(((uintptr_t)base + 31) & ~(uintptr_t)31);
    const int64_t sched_edges = g->sched_ptr[g->n_sched];
    ws.L = p;
    p += (int64_t)g->n_act * W;
    ws.R = p;
    p += sched_edges * W;
    ws.S = (int32_t *)p;
    p += (int64_t)g->m * W;
    ws.csign = (int32_t *)p;
    p += (int64_t)g->n_sched * W;
    ws.cprior = p;
    p += (int64_t)g->n_sched * W;
    ws.T = p;
    p += (int64_t)g->max_deg * W;
    ws.A = p;
    p += (int64_t)g->max_deg * W;
    ws.P = p;
    return ws;
}

int64_t ldpc_workspace_floats(const ldpc_graph *g) {
    return W * ((int64_t)g->n_act + g->sched_ptr[g->n_sched] + g->m + 2 * (int64_t)g->n_sched +
                3 * (int64_t)g->max_deg) +
           W;
}

typedef struct {
    const ldpc_graph *g;
    const float *llr;
    const uint8_t *syn;
    int64_t frames;
    int32_t max_iter;
    uint8_t *bits;
    uint8_t *converged;
    int32_t *iterations;
    float *llr_out;
} job;

/* LLRs of variable `var` for the 8 frames of a block; padding lanes get a sure 0. */
ALWAYS v8f gather_llr(const job *jb, int64_t f0, int nf, int64_t var) {
    v8f v = VF(PHI_HI);
    for (int l = 0; l < nf; ++l) v[l] = jb->llr[(f0 + l) * jb->g->n + var];
    return v;
}

ALWAYS void layered_pass(const ldpc_graph *g, const workspace *ws) {
    v8f *T = (v8f *)ws->T, *A = (v8f *)ws->A, *P = (v8f *)ws->P;
    for (int32_t s = 0; s < g->n_sched; ++s) {
        const int64_t b0 = g->sched_ptr[s];
        const int64_t d = g->sched_ptr[s + 1] - b0;
        const int32_t *vv = g->sched_var + b0;
        v8f *re = (v8f *)(ws->R + b0 * W);
        v8i sg = *(const v8i *)(ws->csign + (int64_t)s * W);
        v8f fwd = *(const v8f *)(ws->cprior + (int64_t)s * W);
        for (int64_t j = 0; j < d; ++j) {
            const v8f t = *(const v8f *)(ws->L + (int64_t)vv[j] * W) - re[j];
            const v8i tb = (v8i)t;
            const v8f a = vphi(vclamp((v8f)(tb & VI(0x7fffffff))));
            sg ^= tb;
            T[j] = t;
            A[j] = a;
            P[j] = fwd;
            fwd += a;
        }
        v8f bwd = VF(0.0f);
        for (int64_t j = d - 1; j >= 0; --j) {
            const v8f ex = P[j] + bwd;
            bwd += A[j];
            const v8f t = T[j];
            const v8f r = (v8f)((v8i)vphi(vclamp(ex)) | ((sg ^ (v8i)t) & VI(SIGN_BIT)));
            re[j] = r;
            *(v8f *)(ws->L + (int64_t)vv[j] * W) = t + r;
        }
    }
}

/* Lanes (bit l) whose hard decisions violate some tested check; stops early once every lane
 * in `need` is known to fail. */
ALWAYS uint32_t failing_lanes(const ldpc_graph *g, const workspace *ws, uint32_t need) {
    v8i fail = VI(0);
    for (int32_t i = 0; i < g->n_test; ++i) {
        const int32_t c = g->test_check[i];
        v8i acc = *(const v8i *)(ws->S + (int64_t)c * W);
        for (int64_t e = g->chk_ptr[c]; e < g->chk_ptr[c + 1]; ++e)
            acc ^= *(const v8i *)(ws->L + (int64_t)g->chk_var[e] * W);
        fail |= acc;
        if ((i & 63) == 63 && (lane_mask(fail) & need) == need) break;
    }
    return lane_mask(fail);
}

static void write_lane(const job *jb, const workspace *ws, int64_t frame, int l, int ok,
                       int32_t iters) {
    const ldpc_graph *g = jb->g;
    uint8_t *bits = jb->bits + frame * g->n;
    float *lo = jb->llr_out ? jb->llr_out + frame * g->n : NULL;
    for (int32_t a = 0; a < g->n_act; ++a) {
        const float x = ws->L[(int64_t)a * W + l];
        bits[g->act_var[a]] = (uint8_t)(signbit(x) != 0);
        if (lo) lo[g->act_var[a]] = x;
    }
    for (int32_t c = 0; c < g->m; ++c) {
        const int32_t f = g->chk_fold[c];
        if (f < 0) continue;
        uint32_t par = (uint32_t)ws->S[(int64_t)c * W + l] >> 31;
        for (int64_t e = g->chk_ptr[c]; e < g->chk_ptr[c + 1]; ++e)
            par ^= signbit(ws->L[(int64_t)g->chk_var[e] * W + l]) != 0;
        bits[f] = (uint8_t)par;
        if (lo) lo[f] = NAN;
    }
    jb->converged[frame] = (uint8_t)ok;
    jb->iterations[frame] = iters;
}

ALWAYS void block_impl(const job *jb, int64_t f0, float *work) {
    const ldpc_graph *g = jb->g;
    const workspace ws = carve(g, work);
    const int nf = (int)(jb->frames - f0 < W ? jb->frames - f0 : W);
    for (int32_t c = 0; c < g->m; ++c)
        for (int l = 0; l < W; ++l)
            ws.S[(int64_t)c * W + l] = (l < nf && jb->syn[(f0 + l) * g->m + c]) ? SIGN_BIT : 0;
    for (int32_t a = 0; a < g->n_act; ++a)
        *(v8f *)(ws.L + (int64_t)a * W) = gather_llr(jb, f0, nf, g->act_var[a]);
    memset(ws.R, 0, sizeof(float) * W * (size_t)g->sched_ptr[g->n_sched]);
    for (int32_t s = 0; s < g->n_sched; ++s) {
        const int32_t c = g->sched_check[s];
        const int32_t f = g->chk_fold[c];
        const v8i sc = *(const v8i *)(ws.S + (int64_t)c * W);
        v8i *cs = (v8i *)(ws.csign + (int64_t)s * W);
        v8f *cp = (v8f *)(ws.cprior + (int64_t)s * W);
        if (f < 0) {
            *cs = sc;
            *cp = VF(0.0f);
        } else {
            const v8i pb = (v8i)gather_llr(jb, f0, nf, f);
            *cs = sc ^ (pb & VI(SIGN_BIT));
            *cp = vphi(vclamp((v8f)(pb & VI(0x7fffffff))));
        }
    }
    for (int32_t i = 0; i < g->n_const; ++i) {
        const int32_t c = g->const_check[i];
        const int32_t f = g->chk_fold[c];
        const v8f val = f >= 0 ? gather_llr(jb, f0, nf, f) : VF(LLR_HARD);
        v8f *lv = (v8f *)(ws.L + (int64_t)g->chk_var[g->chk_ptr[c]] * W);
        *lv += (v8f)((v8i)val ^ *(const v8i *)(ws.S + (int64_t)c * W));
    }
    uint32_t done = nf >= W ? 0u : (0xffu << nf) & 0xffu;
    for (int32_t it = 0;; ++it) {
        if (it > 0) layered_pass(g, &ws);
        const uint32_t need = ~done & 0xffu;
        const uint32_t fresh = need & ~failing_lanes(g, &ws, need);
        for (int l = 0; l < W; ++l)
            if (fresh >> l & 1u) write_lane(jb, &ws, f0 + l, l, 1, it);
        done |= fresh;
        if (done == 0xffu) break;
        if (it >= jb->max_iter) {
            for (int l = 0; l < W; ++l)
                if (!(done >> l & 1u)) write_lane(jb, &ws, f0 + l, l, 0, jb->max_iter);
            break;
        }
    }
}

static void block_portable(const job *jb, int64_t f0, float *work) { block_impl(jb, f0, work); }

static void phi_portable(const float *x, float *out, int64_t count) {
    for (int64_t i = 0; i < count; i += W) {
        v8f v = VF(1.0f);
        for (int l = 0; l < W && i + l < count; ++l) v[l] = x[i + l];
        v = vphi(vclamp(v));
        for (int l = 0; l < W && i + l < count; ++l) out[i + l] = v[l];
    }
}

#if defined(__x86_64__) || defined(__i386__)
#define HAVE_AVX2_PATH 1
__attribute__((target("avx2"))) static void block_avx2(const job *jb, int64_t f0, float *work) {
    block_impl(jb, f0, work);
}
__attribute__((target("avx2"))) static void phi_avx2(const float *x, float *out, int64_t count) {
    for (int64_t i = 0; i < count; i += W) {
        v8f v = VF(1.0f);
        for (int l = 0; l < W && i + l < count; ++l) v[l] = x[i + l];
        v = vphi(vclamp(v));
        for (int l = 0; l < W && i + l < count; ++l) out[i + l] = v[l];
    }
}
#endif

int ldpc_simd_level(void) {
#ifdef HAVE_AVX2_PATH
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) return 2;
#endif
    return 1;
}

typedef void (*block_fn)(const job *, int64_t, float *);

static block_fn pick_block(int32_t simd) {
#ifdef HAVE_AVX2_PATH
    if (simd == 2 || (simd == 0 && ldpc_simd_level() == 2)) return block_avx2;
#endif
    (void)simd;
    return block_portable;
}

void ldpc_phi(const float *x, float *out, int64_t count, int32_t simd) {
#ifdef HAVE_AVX2_PATH
    if (simd == 2 || (simd == 0 && ldpc_simd_level() == 2)) {
        phi_avx2(x, out, count);
        return;
    }
#endif
    (void)simd;
    phi_portable(x, out, count);
}

typedef struct {
    const job *jb;
    block_fn fn;
    float *work;
    int64_t *next; /* shared block counter */
    int64_t blocks;
} worker_arg;

static void *worker(void *p) {
    const worker_arg *wa = (const worker_arg *)p;
    for (;;) {
        const int64_t b = __atomic_fetch_add(wa->next, 1, __ATOMIC_RELAXED);
        if (b >= wa->blocks) break;
        wa->fn(wa->jb, b * W, wa->work);
    }
    return NULL;
}

#define MAX_THREADS 64

int ldpc_decode(const ldpc_graph *g, const float *llr, const uint8_t *syn, int32_t frames,
                int32_t max_iter, int32_t threads, int32_t simd, float *work, uint8_t *bits,
                uint8_t *converged, int32_t *iterations, float *llr_out) {
    if (!g || !llr || !syn || !work || !bits || !converged || !iterations) return -1;
    if (frames < 0 || max_iter < 0 || threads < 1 || threads > MAX_THREADS) return -1;
    if (simd < 0 || simd > 2 || (simd == 2 && ldpc_simd_level() < 2)) return -1;
    const job jb = {g, llr, syn, frames, max_iter, bits, converged, iterations, llr_out};
    const int64_t blocks = ((int64_t)frames + W - 1) / W;
    const int64_t stride = ldpc_workspace_floats(g);
    int64_t next = 0;
    int nt = threads < blocks ? threads : (int)blocks;
    if (nt < 1) return 0;
    worker_arg args[MAX_THREADS];
    pthread_t tid[MAX_THREADS];
    const block_fn fn = pick_block(simd);
    for (int t = 0; t < nt; ++t) args[t] = (worker_arg){&jb, fn, work + t * stride, &next, blocks};
    int started = 0;
    for (int t = 1; t < nt; ++t) {
        if (pthread_create(&tid[t], NULL, worker, &args[t]) != 0) break;
        ++started;
    }
    worker(&args[0]);
    for (int t = 1; t <= started; ++t) pthread_join(tid[t], NULL);
    return 0;
}
