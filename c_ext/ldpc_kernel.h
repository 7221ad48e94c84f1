/* Decoder kernel, included by ldpc_decoder.c (portable and AVX2 builds) and by
 * ldpc_decoder_fma.c (AVX2 + FMA build); everything here is static. See ldpc_decoder.c for
 * the algorithm. */
#ifndef CVQKD_LDPC_KERNEL_H
#define CVQKD_LDPC_KERNEL_H

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "ldpc_decoder.h"

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

/* All-ones lanes where a <= b (sign of a - b; finite arguments). Integer shifts and float
 * subtraction split cleanly into SSE/NEON halves, where 256-bit float compares and float/int
 * conversions would be lowered lane by lane. */
ALWAYS v8i vle(v8f a, v8f b) { return (v8i)(a - b) >> 31; }

ALWAYS v8f vclamp_hi(v8f x) { return vsel(vle(VF(PHI_HI), x), VF(PHI_HI), x); }

ALWAYS v8f vclamp(v8f x) { return vclamp_hi(vsel(vle(x, VF(PHI_LO)), VF(PHI_LO), x)); }

#define MAGIC 12582912.0f /* 1.5 * 2^23: x + MAGIC rounds x to an integer held in the low bits */

/* phi(x) = -ln tanh(x/2) for x in [PHI_LO, PHI_HI], on n <= NP independent vectors at once
 * (n a compile-time constant at each call): the statements of the n evaluations are interleaved
 * so that the out-of-order core overlaps their long dependency chains (one evaluation alone is
 * latency-bound). */
#define NP 4
#define EACH(stmt)                                                                             \
    for (int i = 0; i < n; ++i) {                                                              \
        stmt;                                                                                  \
    }
ALWAYS void vphi_n(v8f *x, const int n) {
    v8f kr[NP], kf[NP], r[NP], p[NP], tk[NP], u[NP], w[NP], nn[NP], d1[NP], s[NP], e[NP];
    v8f s2[NP], q[NP];
    v8i db[NP], sm[NP];
    /* e^-x = 2^k (1 + p), expm1(-x) = 2^k p + (2^k - 1), k = round(-x / ln 2),
     * p = r q(r): q minimax for expm1(r)/r on |r| <= ln2/2 (relative error 2.1e-5) */
    EACH(kr[i] = -x[i] * VF(1.44269504f) + VF(MAGIC))
    EACH(kf[i] = kr[i] - VF(MAGIC))
    EACH(r[i] = (-x[i] - kf[i] * VF(0.693145751953125f)) - kf[i] * VF(1.4286068e-06f))
    EACH(tk[i] = (v8f)(((v8i)kr[i] - (v8i)VF(MAGIC) + VI(127)) << 23))
    EACH(p[i] = VF(0.16749629f) + r[i] * VF(0.041609980f))
    EACH(p[i] = VF(0.50001651f) + r[i] * p[i])
    EACH(p[i] = VF(1.0f) + r[i] * p[i])
    EACH(p[i] = r[i] * p[i])
    EACH(u[i] = tk[i] + tk[i] * p[i])
    EACH(w[i] = tk[i] * p[i] + (tk[i] - VF(1.0f)))
    /* e^-x <= 1/3: phi = 2 atanh(e^-x); else (2 + w)/(-w) = 2^e nn / d1, nn = 2 + w in [4/3, 2) */
    EACH(nn[i] = VF(2.0f) + w[i])
    EACH(db[i] = (v8i)(-w[i]))
    EACH(d1[i] = (v8f)((db[i] & VI(0x7fffff)) | VI(0x3f800000)))
    EACH(sm[i] = vle(u[i], VF(1.0f / 3)))
    EACH(s[i] = vsel(sm[i], u[i], nn[i] - d1[i]) / vsel(sm[i], VF(1.0f), nn[i] + d1[i]))
    EACH(e[i] = vsel(sm[i], VF(0.0f),
                     (v8f)((v8i)VF(MAGIC) + VI(127) - ((db[i] >> 23) & VI(0xff))) - VF(MAGIC)))
    /* 2 atanh(s) = s q(s^2), |s| < 1/3: q minimax on [0, 1/9] (relative error 7.2e-6) */
    EACH(s2[i] = s[i] * s[i])
    EACH(q[i] = VF(0.66437930f) + s2[i] * VF(0.45297286f))
    EACH(q[i] = VF(2.0000145f) + s2[i] * q[i])
    EACH(x[i] = e[i] * VF(0.693147181f) + s[i] * q[i])
}

/* phi of `count` vectors in place (NP at a time, the remainder together: no padding). */
ALWAYS void vphi_run(v8f *buf, int64_t count) {
    int64_t j = 0;
    for (; j + NP <= count; j += NP) vphi_n(buf + j, NP);
    switch (count - j) {
    case 1: vphi_n(buf + j, 1); break;
    case 2: vphi_n(buf + j, 2); break;
    case 3: vphi_n(buf + j, 3); break;
    default: break;
    }
}

/* phi of `count` vectors in place, arguments clamped first. */
ALWAYS void vphi_array(v8f *buf, int64_t count) {
    for (int64_t j = 0; j < count; ++j) buf[j] = vclamp(buf[j]);
    vphi_run(buf, count);
}

/* The same for arguments known to be >= PHI_LO (sums of phi values, each >= phi(PHI_HI) ~
 * PHI_LO): only the upper end is clamped. */
ALWAYS void vphi_array_sums(v8f *buf, int64_t count) {
    for (int64_t j = 0; j < count; ++j) buf[j] = vclamp_hi(buf[j]);
    vphi_run(buf, count);
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
    float *T, *A, *P; /* [max_deg + NP][W] scratch of one check */
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
    p += ((int64_t)g->max_deg + NP) * W;
    ws.A = p;
    p += ((int64_t)g->max_deg + NP) * W;
    ws.P = p;
    return ws;
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
    int64_t *next; /* the call's queue: index of the next frame no group has taken */
    struct pool *pool;
} job;

/* Groups of one call hand their last lanes over: once the queue is empty, a group left with
 * at most DONATE_LANES busy lanes (and not the last group running) publishes them and stops;
 * other groups take them into their free lanes at their next pass boundary. Two tails become
 * one, without waiting: a lane's state moves exactly, so its frame's result is unchanged. */
#define DONATE_LANES 4
typedef struct pool {
    pthread_mutex_t lock;
    int live;           /* groups still running */
    uint32_t orphans;   /* lanes of `from` not taken yet (read unlocked as a hint) */
    workspace from;     /* the donor's workspace: the call's memory, untouched once donated */
    int64_t frame[W];
    int32_t count[W];
} pool;

/* Index of the next pending frame of the call, or -1 once every frame has been taken. */
ALWAYS int64_t take_frame(const job *jb) {
    const int64_t f = __atomic_fetch_add(jb->next, 1, __ATOMIC_RELAXED);
    return f < jb->frames ? f : -1;
}

/* Channel LLR of variable `var` of `frame`; an idle lane (frame < 0) gets a sure 0. */
ALWAYS float llr_of(const job *jb, int64_t frame, int32_t var) {
    return frame < 0 ? PHI_HI : jb->llr[frame * jb->g->n + var];
}

ALWAYS int32_t syn_of(const job *jb, int64_t frame, int32_t c) {
    return frame >= 0 && jb->syn[frame * jb->g->m + c] ? SIGN_BIT : 0;
}

/* One layered pass over every scheduled check. Lanes set in `fresh` start a frame: their
 * stored check-to-variable messages are read as 0 (R is not cleared when a lane is loaded). */
ALWAYS void layered_pass(const ldpc_graph *g, const workspace *ws, v8i fresh) {
    const v8i old = ~fresh;
    v8f *T = (v8f *)ws->T, *A = (v8f *)ws->A, *P = (v8f *)ws->P;
    for (int32_t s = 0; s < g->n_sched; ++s) {
        const int64_t b0 = g->sched_ptr[s];
        const int64_t d = g->sched_ptr[s + 1] - b0;
        const int32_t *vv = g->sched_var + b0;
        v8f *re = (v8f *)(ws->R + b0 * W);
        v8i sg = *(const v8i *)(ws->csign + (int64_t)s * W);
        for (int64_t j = 0; j < d; ++j) { /* variable-to-check messages */
            const v8f t = *(const v8f *)(ws->L + (int64_t)vv[j] * W) - (v8f)((v8i)re[j] & old);
            sg ^= (v8i)t;
            T[j] = t;
            A[j] = (v8f)((v8i)t & VI(0x7fffffff));
        }
        vphi_array(A, d);
        v8f fwd = *(const v8f *)(ws->cprior + (int64_t)s * W);
        for (int64_t j = 0; j < d; ++j) { /* forward partial sums */
            P[j] = fwd;
            fwd += A[j];
        }
        v8f bwd = VF(0.0f);
        for (int64_t j = d - 1; j >= 0; --j) { /* exclusive sums */
            const v8f a = A[j];
            P[j] += bwd;
            bwd += a;
        }
        vphi_array_sums(P, d);
        for (int64_t j = 0; j < d; ++j) {
            const v8f t = T[j];
            const v8f r = (v8f)((v8i)P[j] | ((sg ^ (v8i)t) & VI(SIGN_BIT)));
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

/* phi of the first `cnt` floats of buf (NP vectors), written to out[dest[k]]; returns 0. */
ALWAYS int phi_scatter(v8f *buf, int cnt, const int64_t *dest, float *out) {
    float *packed = (float *)buf;
    if (cnt == 0) return 0;
    for (int k = cnt; k < NP * W; ++k) packed[k] = 1.0f;
    vphi_array(buf, NP);
    for (int k = 0; k < cnt; ++k) out[dest[k]] = packed[k];
    return 0;
}

/* Start the frames frame[l] in the lanes l of `lanes` (bit l): the same initial state lane by
 * lane as a fresh group (R counts as 0 in the lane's first pass: layered_pass's `fresh`), so a
 * frame's trajectory does not depend on when or where it runs. */
static void load_lanes(const job *jb, const workspace *ws, const int64_t *frame,
                       uint32_t lanes) {
    const ldpc_graph *g = jb->g;
    int ln[W], nl = 0;
    for (int l = 0; l < W; ++l)
        if (lanes >> l & 1u) ln[nl++] = l;
    for (int32_t c = 0; c < g->m; ++c)
        for (int i = 0; i < nl; ++i) ws->S[(int64_t)c * W + ln[i]] = syn_of(jb, frame[ln[i]], c);
    for (int32_t a = 0; a < g->n_act; ++a)
        for (int i = 0; i < nl; ++i)
            ws->L[(int64_t)a * W + ln[i]] = llr_of(jb, frame[ln[i]], g->act_var[a]);
    /* phi of the folded variables' |LLR|, packed NP * W to a batch (phi works element by
     * element, so a value's result does not depend on its position or its batch-mates) */
    v8f buf[NP];
    float *packed = (float *)buf;
    int64_t dest[NP * W];
    int cnt = 0;
    for (int32_t s = 0; s < g->n_sched; ++s) {
        const int32_t c = g->sched_check[s];
        const int32_t f = g->chk_fold[c];
        int32_t *cs = ws->csign + (int64_t)s * W;
        for (int i = 0; i < nl; ++i) {
            const int l = ln[i];
            const int32_t sc = ws->S[(int64_t)c * W + l];
            if (f < 0) {
                cs[l] = sc;
                ws->cprior[(int64_t)s * W + l] = 0.0f;
                continue;
            }
            const float x = llr_of(jb, frame[l], f);
            int32_t xb;
            memcpy(&xb, &x, sizeof xb);
            cs[l] = sc ^ (xb & SIGN_BIT);
            packed[cnt] = fabsf(x);
            dest[cnt++] = (int64_t)s * W + l;
            if (cnt == NP * W) cnt = phi_scatter(buf, cnt, dest, ws->cprior);
        }
    }
    phi_scatter(buf, cnt, dest, ws->cprior);
    for (int32_t k = 0; k < g->n_const; ++k) {
        const int32_t c = g->const_check[k];
        const int32_t f = g->chk_fold[c];
        const int64_t v = g->chk_var[g->chk_ptr[c]];
        for (int i = 0; i < nl; ++i) {
            const int l = ln[i];
            const float val = f >= 0 ? llr_of(jb, frame[l], f) : LLR_HARD;
            int32_t bits;
            memcpy(&bits, &val, sizeof bits);
            bits ^= ws->S[(int64_t)c * W + l];
            float msg;
            memcpy(&msg, &bits, sizeof msg);
            ws->L[v * W + l] += msg;
        }
    }
}

ALWAYS int queue_empty(const job *jb) {
    return __atomic_load_n(jb->next, __ATOMIC_RELAXED) >= jb->frames;
}

/* Copy lane `sl` of workspace `src` into lane `dl` of `dst` (everything a frame's lane holds). */
static void move_lane(const ldpc_graph *g, const workspace *dst, int dl, const workspace *src,
                      int sl) {
    for (int32_t a = 0; a < g->n_act; ++a) dst->L[(int64_t)a * W + dl] = src->L[(int64_t)a * W + sl];
    for (int64_t e = 0; e < g->sched_ptr[g->n_sched]; ++e) dst->R[e * W + dl] = src->R[e * W + sl];
    for (int32_t c = 0; c < g->m; ++c) dst->S[(int64_t)c * W + dl] = src->S[(int64_t)c * W + sl];
    for (int32_t s = 0; s < g->n_sched; ++s) {
        dst->csign[(int64_t)s * W + dl] = src->csign[(int64_t)s * W + sl];
        dst->cprior[(int64_t)s * W + dl] = src->cprior[(int64_t)s * W + sl];
    }
}

/* At a pass boundary with the queue empty: take handed-over lanes into the free lanes of
 * `busy`; returns the lanes taken (lanes that have not run a pass yet are added to *fresh).
 * With nothing busy and nothing to take, the group leaves the call (*leave = 1). */
static uint32_t adopt(const job *jb, const workspace *ws, uint32_t busy, int64_t *frame,
                      int32_t *count, uint32_t *fresh, int *leave) {
    pool *pl = jb->pool;
    uint32_t taken = 0;
    *leave = 0;
    if (busy && !__atomic_load_n(&pl->orphans, __ATOMIC_RELAXED)) return 0;
    pthread_mutex_lock(&pl->lock);
    for (int sl = 0; sl < W && pl->orphans; ++sl) {
        if (!(pl->orphans >> sl & 1u)) continue;
        int dl = 0;
        while (dl < W && ((busy | taken) >> dl & 1u)) ++dl;
        if (dl == W) break;
        move_lane(jb->g, ws, dl, &pl->from, sl);
        frame[dl] = pl->frame[sl];
        count[dl] = pl->count[sl];
        if (count[dl] == 0) *fresh |= 1u << dl;
        taken |= 1u << dl;
        __atomic_store_n(&pl->orphans, pl->orphans & ~(1u << sl), __ATOMIC_RELAXED);
    }
    if (!busy && !taken) {
        --pl->live;
        *leave = 1;
    }
    pthread_mutex_unlock(&pl->lock);
    return taken;
}

/* Hand the busy lanes over and stop, if another group is running and none are waiting. */
static int donate(const job *jb, const workspace *ws, uint32_t busy, const int64_t *frame,
                  const int32_t *count) {
    pool *pl = jb->pool;
    int done = 0;
    pthread_mutex_lock(&pl->lock);
    if (pl->live > 1 && !pl->orphans) {
        pl->from = *ws;
        for (int l = 0; l < W; ++l) {
            pl->frame[l] = frame[l];
            pl->count[l] = count[l];
        }
        __atomic_store_n(&pl->orphans, busy, __ATOMIC_RELAXED);
        --pl->live;
        done = 1;
    }
    pthread_mutex_unlock(&pl->lock);
    return done;
}

/* One group of W lanes decoding frames from the call's queue until it is empty: after every
 * pass (and before the first of each frame) the pending lanes are tested; a lane whose
 * syndrome matches, or that has run max_iter passes, writes its frame and takes the next
 * pending frame, so the group runs full until the queue is empty. Then groups hand their last
 * lanes to one another (adopt, donate) and leave. Returns the passes run. */
ALWAYS int64_t group_impl(const job *jb, float *work) {
    const ldpc_graph *g = jb->g;
    const workspace ws = carve(g, work);
    int64_t frame[W];
    int32_t count[W] = {0}; /* passes run on the lane's frame */
    uint32_t busy = 0;
    for (int l = 0; l < W; ++l) {
        frame[l] = take_frame(jb);
        if (frame[l] >= 0) busy |= 1u << l;
    }
    load_lanes(jb, &ws, frame, 0xffu); /* idle lanes too: defined values */
    int64_t passes = 0;
    uint32_t test = busy, fresh = 0xffu; /* fresh: lanes loaded since the last pass */
    for (;;) {
        while (test) { /* retire and refill until every lane holding a frame has been tested */
            const uint32_t ok = test & ~failing_lanes(g, &ws, test);
            uint32_t retired = ok;
            for (int l = 0; l < W; ++l) {
                if (ok >> l & 1u) {
                    write_lane(jb, &ws, frame[l], l, 1, count[l]);
                } else if ((test >> l & 1u) && count[l] >= jb->max_iter) {
                    write_lane(jb, &ws, frame[l], l, 0, jb->max_iter);
                    retired |= 1u << l;
                }
            }
            uint32_t loaded = 0;
            for (int l = 0; l < W; ++l) {
                if (!(retired >> l & 1u)) continue;
                frame[l] = take_frame(jb);
                count[l] = 0;
                if (frame[l] >= 0) loaded |= 1u << l;
            }
            busy = (busy & ~retired) | loaded;
            if (loaded) load_lanes(jb, &ws, frame, loaded);
            fresh |= loaded;
            test = loaded;
        }
        if (queue_empty(jb)) { /* the tail: lanes move between groups, groups leave */
            int leave;
            busy |= adopt(jb, &ws, busy, frame, count, &fresh, &leave);
            if (leave) break;
            if (__builtin_popcount(busy) <= DONATE_LANES && donate(jb, &ws, busy, frame, count))
                break;
        }
        if (!busy) continue; /* not reached: an empty group either refilled or left */
        v8i fresh_lanes;
        for (int l = 0; l < W; ++l) fresh_lanes[l] = -(int32_t)(fresh >> l & 1u);
        layered_pass(g, &ws, fresh_lanes);
        fresh = 0;
        ++passes;
        for (int l = 0; l < W; ++l) count[l] += (int32_t)(busy >> l & 1u);
        test = busy;
    }
    return passes;
}

/* phi of `count` floats (tests and accuracy measurements). */
ALWAYS void phi_impl(const float *x, float *out, int64_t count) {
    for (int64_t i = 0; i < count; i += W) {
        v8f buf[NP] = {VF(1.0f)};
        for (int l = 0; l < W && i + l < count; ++l) buf[0][l] = x[i + l];
        vphi_array(buf, 1);
        for (int l = 0; l < W && i + l < count; ++l) out[i + l] = buf[0][l];
    }
}

#endif
