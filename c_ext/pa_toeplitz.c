/* Toeplitz hashing over GF(2): the matrix-vector product as a carry-less middle product.
 *
 * y_i = sum_j s[i - j + n - 1] x_j (i < m, j < n) is coefficient n - 1 + i of the polynomial
 * product S(z) X(z) over GF(2). Only the m-coefficient window is needed, so the product is
 * computed as a Toeplitz matrix-vector product (TMVP) on 64-bit words:
 *
 * - The seed is shifted by d = 64 nw - n + 1 zero bits (nw = ceil(n / 64)) so that the output
 *   window starts on a word boundary: output word I is word nw + I of S''(z) X(z).
 * - The mw x nw word matrix is tiled by k x k blocks (k = b 2^L words); each block is a TMVP
 *   whose 64 x 64-bit sub-blocks (I, J) use seed words sp[I - J] (low half of the 128-bit
 *   carry-less product) and sp[I - J - 1] (high half).
 * - A block of even size 2h is split into 2 x 2 Toeplitz blocks and computed with three
 *   half-size TMVPs (the transposed Karatsuba of Hanrot, Quercia and Zimmermann, "The middle
 *   product algorithm I", AAECC 14, 415 (2004); Fan and Hasan, IEEE TC 56, 224 (2007)):
 *     r0 = T1 x0 + T0 x1, r1 = T2 x0 + T1 x1 ->
 *     P0 = T1 (x0 + x1), r0 = P0 + (T0 + T1) x1, r1 = P0 + (T2 + T1) x0.
 * - Blocks of b <= PA_BASE_MAX words are computed directly with b (b + 1) carry-less
 *   64 x 64 -> 128-bit products: AVX-512 VPCLMULQDQ, PCLMULQDQ or ARMv8 PMULL where the CPU
 *   has it (checked at run time), else a portable 4-bit-window software product (Brent,
 *   Gaudry, Thome, Zimmermann, "Faster multiplication in GF(2)[x]", ANTS VIII (2008), sec. 2).
 *
 * Memory: the x block (k words), the seed window (2k), the output (ceil(mw / k) k) and the
 * Karatsuba scratch (< 3k); no global state, no static buffers: thread-safe and reentrant.
 */
#include "pa_toeplitz.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(_M_X64)
#define PA_X86 1
#include <immintrin.h>
#endif

#if defined(__aarch64__) && defined(__linux__)
#define PA_ARM64 1
#include <arm_neon.h>
#include <sys/auxv.h>
#ifndef HWCAP_PMULL
#define HWCAP_PMULL (1 << 4) /* Linux arm64 uapi hwcap bit of PMULL (64 x 64 -> 128) */
#endif
#endif

#define PA_BASE_MAX 32

/* ---------------------------------------------------------------- bit loading */

static inline uint64_t load_le64(const uint8_t *p) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
#else
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
#endif
}

/* Bits [pos, pos + 64) of src (nbits long) as a word, bit t of the word = bit pos + t; bits
 * outside [0, nbits) read as 0. */
static uint64_t load_word_edge(const uint8_t *src, uint64_t nbits, int64_t pos) {
    if (pos + 64 <= 0 || (pos >= 0 && (uint64_t)pos >= nbits)) return 0;
    uint64_t v = 0;
    for (int t = 0; t < 64; t++) {
        int64_t q = pos + t;
        if (q >= 0 && (uint64_t)q < nbits) v |= (uint64_t)((src[q >> 3] >> (q & 7)) & 1) << t;
    }
    return v;
}

/* dst[w] = bits [off + 64 w, off + 64 w + 64) of src, zero outside [0, nbits). */
static void load_bits(const uint8_t *src, uint64_t nbits, int64_t off, uint64_t *dst,
                      uint64_t nwords) {
    for (uint64_t w = 0; w < nwords; w++) {
        int64_t pos = off + 64 * (int64_t)w;
        if (pos >= 0 && (uint64_t)pos + 72 <= nbits) {
            const uint8_t *p = src + (pos >> 3);
            unsigned sh = (unsigned)(pos & 7);
            uint64_t v = load_le64(p);
            if (sh) v = (v >> sh) | ((uint64_t)p[8] << (64 - sh));
            dst[w] = v;
        } else {
            dst[w] = load_word_edge(src, nbits, pos);
        }
    }
}

/* ---------------------------------------------------------------- base cases
 * r[I] ^= sum_J lo(sp[I-J] * x[J]) ^ hi(sp[I-J-1] * x[J]) for I, J < k; sp[-k .. k-1] valid.
 * With acc[P] = sum_J sp[P-J] * x[J] (128 bits), r[I] ^= lo(acc[I]) ^ hi(acc[I-1]). */

static void base_portable(const uint64_t *sp, const uint64_t *x, uint64_t *r, uint64_t k) {
    uint64_t tab[PA_BASE_MAX][16];
    uint64_t top[PA_BASE_MAX];
    for (uint64_t j = 0; j < k; j++) {
        /* multiples of x[j] with its top 3 bits cleared (degree <= 60, times degree <= 3) */
        uint64_t a = x[j] & ((UINT64_C(1) << 61) - 1);
        uint64_t *u = tab[j];
        u[0] = 0;
        u[1] = a;
        for (int i = 2; i < 16; i += 2) {
            u[i] = u[i >> 1] << 1;
            u[i + 1] = u[i] ^ a;
        }
        top[j] = x[j] >> 61;
    }
    uint64_t prev_hi = 0;
    for (int64_t p = -1; p < (int64_t)k; p++) {
        uint64_t lo = 0, hi = 0;
        for (uint64_t j = 0; j < k; j++) {
            uint64_t b = sp[p - (int64_t)j];
            const uint64_t *u = tab[j];
            lo ^= u[b & 15];
            for (int s = 4; s < 64; s += 4) {
                uint64_t t = u[(b >> s) & 15];
                lo ^= t << s;
                hi ^= t >> (64 - s);
            }
            for (int t = 0; t < 3; t++) { /* the 3 cleared bits of x[j]: b << (61 + t) */
                uint64_t msk = (uint64_t)0 - ((top[j] >> t) & 1);
                lo ^= (b << (61 + t)) & msk;
                hi ^= (b >> (3 - t)) & msk;
            }
        }
        if (p >= 0) r[p] ^= lo ^ prev_hi;
        prev_hi = hi;
    }
}

#ifdef PA_X86
__attribute__((target("pclmul,sse4.1"))) static void base_pclmul(const uint64_t *sp,
                                                                  const uint64_t *x, uint64_t *r,
                                                                  uint64_t k) {
    __m128i prev = _mm_setzero_si128();
    for (int64_t p = -1; p < (int64_t)k; p++) {
        __m128i acc0 = _mm_setzero_si128(), acc1 = _mm_setzero_si128();
        uint64_t j = 0;
        for (; j + 1 < k; j += 2) { /* sv = (sp[p-j-1], sp[p-j]), xv = (x[j], x[j+1]) */
            __m128i sv = _mm_loadu_si128((const __m128i *)(sp + p - (int64_t)j - 1));
            __m128i xv = _mm_loadu_si128((const __m128i *)(x + j));
            acc0 = _mm_xor_si128(acc0, _mm_clmulepi64_si128(sv, xv, 0x01));
            acc1 = _mm_xor_si128(acc1, _mm_clmulepi64_si128(sv, xv, 0x10));
        }
        if (j < k) {
            __m128i sv = _mm_loadl_epi64((const __m128i *)(sp + p - (int64_t)j));
            __m128i xv = _mm_loadl_epi64((const __m128i *)(x + j));
            acc0 = _mm_xor_si128(acc0, _mm_clmulepi64_si128(sv, xv, 0x00));
        }
        __m128i acc = _mm_xor_si128(acc0, acc1);
        if (p >= 0)
            r[p] ^= (uint64_t)_mm_cvtsi128_si64(acc) ^ (uint64_t)_mm_extract_epi64(prev, 1);
        prev = acc;
    }
}

/* AVX-512 VPCLMULQDQ: eight products per J from one 512-bit load of sp[p0 - j .. p0 - j + 7]
 * and a broadcast x[j]: even lanes give acc[p0], acc[p0 + 2], ...; odd lanes acc[p0 + 1], ...
 * The load is masked to the P < k of the group, so nothing outside the window is read. */
__attribute__((target("avx512f,vpclmulqdq,pclmul,sse4.1"))) static inline void base_vpclmul(
    const uint64_t *sp, const uint64_t *x, uint64_t *r, uint64_t k) {
    for (int64_t p0 = -1; p0 < (int64_t)k; p0 += 8) {
        int64_t valid = (int64_t)k - p0; /* P = p0 + q exists for q < valid */
        __mmask8 mask = valid >= 8 ? (__mmask8)0xFF : (__mmask8)((1u << valid) - 1);
        __m512i ae = _mm512_setzero_si512(), ao = _mm512_setzero_si512();
        for (uint64_t j = 0; j < k; j++) {
            __m512i sv = _mm512_maskz_loadu_epi64(mask, (const void *)(sp + p0 - (int64_t)j));
            __m512i xv = _mm512_set1_epi64((long long)x[j]);
            ae = _mm512_xor_si512(ae, _mm512_clmulepi64_epi128(sv, xv, 0x00));
            ao = _mm512_xor_si512(ao, _mm512_clmulepi64_epi128(sv, xv, 0x01));
        }
        uint64_t e[8], o[8];
        _mm512_storeu_si512((void *)e, ae);
        _mm512_storeu_si512((void *)o, ao);
        for (int l = 0; l < 4; l++) { /* acc[p] = (e[2l], e[2l+1]), acc[p+1] = (o[2l], o[2l+1]) */
            int64_t p = p0 + 2 * l;
            if (p >= 0 && p < (int64_t)k) r[p] ^= e[2 * l];
            if (p + 1 < (int64_t)k) r[p + 1] ^= e[2 * l + 1] ^ o[2 * l];
            if (p + 2 < (int64_t)k) r[p + 2] ^= o[2 * l + 1];
        }
    }
}

/* libgcc fills the CPU model in a load-time constructor: no __builtin_cpu_init (a write to
 * shared state) is needed here. */
static int have_pclmul(void) {
    return __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
}

static int have_vpclmul(void) {
    return have_pclmul() && __builtin_cpu_supports("avx512f")
           && __builtin_cpu_supports("vpclmulqdq");
}
#else
static int have_pclmul(void) { return 0; }
static int have_vpclmul(void) { return 0; }
#endif

#ifdef PA_ARM64
/* ARMv8 crypto extension PMULL (vmull_p64): one 64 x 64 -> 128-bit product per instruction. */
__attribute__((target("+crypto"))) static inline void base_pmull(const uint64_t *sp,
                                                                 const uint64_t *x, uint64_t *r,
                                                                 uint64_t k) {
    for (int64_t p = -1; p < (int64_t)k; p++) {
        uint64x2_t acc = vdupq_n_u64(0);
        for (uint64_t j = 0; j < k; j++) {
            poly128_t prod = vmull_p64((poly64_t)sp[p - (int64_t)j], (poly64_t)x[j]);
            acc = veorq_u64(acc, vreinterpretq_u64_p128(prod));
        }
        if (p >= 0) r[p] ^= vgetq_lane_u64(acc, 0);
        if (p + 1 < (int64_t)k) r[p + 1] ^= vgetq_lane_u64(acc, 1);
    }
}

static int have_pmull(void) { return (getauxval(AT_HWCAP) & HWCAP_PMULL) != 0; }
#else
static int have_pmull(void) { return 0; }
#endif

int pa_impl_available(int impl) {
    switch (impl) {
    case PA_IMPL_AUTO:
    case PA_IMPL_PORTABLE: return 1;
    case PA_IMPL_PCLMUL: return have_pclmul();
    case PA_IMPL_VPCLMUL: return have_vpclmul();
    case PA_IMPL_PMULL: return have_pmull();
    default: return 0;
    }
}

/* ---------------------------------------------------------------- Karatsuba TMVP */

static void xor_into(uint64_t *dst, const uint64_t *src, uint64_t n) {
    for (uint64_t i = 0; i < n; i++) dst[i] ^= src[i];
}

/* r[0..k) ^= T(sp) x, k = b 2^L; scratch: < 3k words. One copy per kernel (the macro below), so
 * the base case inlines and the xor loops are compiled for the kernel's instruction set.
 * P0 is added to both halves without a temporary: r0 ^= r1; r1 += P0; r0 ^= r1. */
#define PA_DEFINE_TMVP(NAME, BASE, ATTR)                                                          \
    ATTR static void NAME(const uint64_t *sp, const uint64_t *x, uint64_t *r, uint64_t k,        \
                          uint64_t b, uint64_t *scratch) {                                        \
        if (k <= b) {                                                                             \
            BASE(sp, x, r, k);                                                                    \
            return;                                                                               \
        }                                                                                         \
        uint64_t h = k / 2;                                                                       \
        int64_t hs = (int64_t)h;                                                                  \
        uint64_t *xs = scratch, *ss = scratch + h, *next = scratch + 3 * h;                       \
        const uint64_t *x0 = x, *x1 = x + h;                                                      \
        uint64_t *r0 = r, *r1 = r + h;                                                            \
        for (uint64_t i = 0; i < h; i++) xs[i] = x0[i] ^ x1[i];                                   \
        for (uint64_t i = 0; i < h; i++) r0[i] ^= r1[i];                                          \
        NAME(sp, xs, r1, h, b, next); /* P0 = T1 (x0 + x1) */                                     \
        for (uint64_t i = 0; i < h; i++) r0[i] ^= r1[i];                                          \
        for (int64_t a = -hs; a < hs; a++) ss[h + a] = sp[a - hs] ^ sp[a];                        \
        NAME(ss + h, x1, r0, h, b, next); /* r0 += (T0 + T1) x1 */                                \
        for (int64_t a = -hs; a < hs; a++) ss[h + a] = sp[a + hs] ^ sp[a];                        \
        NAME(ss + h, x0, r1, h, b, next); /* r1 += (T2 + T1) x0 */                                \
    }

typedef void (*tmvp_fn)(const uint64_t *sp, const uint64_t *x, uint64_t *r, uint64_t k,
                        uint64_t b, uint64_t *scratch);

PA_DEFINE_TMVP(tmvp_portable, base_portable, )
#ifdef PA_X86
PA_DEFINE_TMVP(tmvp_pclmul, base_pclmul, __attribute__((target("pclmul,sse4.1"))))
PA_DEFINE_TMVP(tmvp_vpclmul, base_vpclmul,
               __attribute__((target("avx512f,vpclmulqdq,pclmul,sse4.1"))))
#endif
#ifdef PA_ARM64
PA_DEFINE_TMVP(tmvp_pmull, base_pmull, __attribute__((target("+crypto"))))
#endif

/* ---------------------------------------------------------------- tiling plan */

typedef struct {
    uint64_t k, b, rows, cols;
} plan_t;

static uint64_t ceil_div(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

/* Cost model (ns on a 2.6 GHz Zen 4 core, fitted to timings of forced tilings): a base block
 * of b words costs c_call + c_mul b (b + 1), a Karatsuba level on k words c_lvl k. It only
 * ranks tilings; any tiling gives the same result. */
typedef struct {
    double c_mul, c_call, c_lvl;
} cost_t;

static double block_cost(uint64_t b, uint64_t k, const cost_t *c, int impl) {
    if (k > b) return 3.0 * block_cost(b, k / 2, c, impl) + c->c_lvl * (double)k;
    /* the AVX-512 kernel computes the b + 1 accumulators in groups of 8 */
    double rows = impl == PA_IMPL_VPCLMUL ? 8.0 * (double)((b + 8) / 8) : (double)(b + 1);
    return c->c_call + c->c_mul * (double)b * rows;
}

static plan_t make_plan(uint64_t mw, uint64_t nw, uint64_t block_words, uint64_t base_words,
                        int impl) {
    static const cost_t costs[] = {
        [PA_IMPL_PORTABLE] = {12.0, 13.0, 11.0},
        [PA_IMPL_PCLMUL] = {0.68, 8.4, 5.6},
        [PA_IMPL_VPCLMUL] = {0.16, 6.1, 3.9},
        [PA_IMPL_PMULL] = {0.7, 8.0, 6.0}, /* assumed like PCLMULQDQ: not yet timed on a board */
    };
    const cost_t *c = &costs[impl];
    plan_t best = {0, 0, 0, 0};
    double best_cost = 0.0;
    uint64_t kmax = 2 * (mw < nw ? mw : nw) + PA_BASE_MAX;
    for (uint64_t b = 1; b <= PA_BASE_MAX; b++) {
        if (base_words && b != base_words) continue;
        for (uint64_t k = b; k <= kmax; k *= 2) {
            if (block_words && k != block_words) continue;
            uint64_t rows = ceil_div(mw, k), cols = ceil_div(nw, k);
            double cost = (double)rows * (double)cols * block_cost(b, k, c, impl);
            if (best.k == 0 || cost < best_cost) {
                best = (plan_t){k, b, rows, cols};
                best_cost = cost;
            }
        }
    }
    return best;
}

static int resolve_impl(int impl) {
    if (impl == PA_IMPL_AUTO)
        return have_vpclmul() ? PA_IMPL_VPCLMUL
               : have_pclmul() ? PA_IMPL_PCLMUL
               : have_pmull()  ? PA_IMPL_PMULL
                               : PA_IMPL_PORTABLE;
    return pa_impl_available(impl) ? impl : -1;
}

static uint64_t plan_words(const plan_t *pl) {
    /* x block (k) + seed window (2k) + output (rows k) + Karatsuba scratch (< 3k) */
    return pl->k + 2 * pl->k + pl->rows * pl->k + 3 * pl->k;
}

/* ---------------------------------------------------------------- drivers */

/* out = T x (+ bits [ident_off, ident_off + m) of x when ident is set); T: m x ncols with
 * seed of ncols + m - 1 bits. */
static int toeplitz_run(const uint8_t *x, uint64_t nx, uint64_t ncols, const uint8_t *seed,
                        uint8_t *out, uint64_t m, int ident, int impl, uint64_t block_words,
                        uint64_t base_words) {
    if (m == 0 || ncols > nx || (ident && ncols + m != nx) || base_words > PA_BASE_MAX)
        return PA_ERR_ARG;
    impl = resolve_impl(impl);
    if (impl < 0) return PA_ERR_ARG;
    tmvp_fn tmvp = tmvp_portable;
#ifdef PA_X86
    if (impl == PA_IMPL_PCLMUL) tmvp = tmvp_pclmul;
    if (impl == PA_IMPL_VPCLMUL) tmvp = tmvp_vpclmul;
#endif
#ifdef PA_ARM64
    if (impl == PA_IMPL_PMULL) tmvp = tmvp_pmull;
#endif
    uint64_t mw = ceil_div(m, 64), nw = ceil_div(ncols, 64);
    plan_t pl = make_plan(mw, nw ? nw : 1, block_words, base_words, impl);
    if (pl.k == 0) return PA_ERR_ARG;
    uint64_t k = pl.k;
    uint64_t *mem = calloc(plan_words(&pl), sizeof(uint64_t));
    if (!mem) return PA_ERR_NOMEM;
    uint64_t *xb = mem, *sw = xb + k, *racc = sw + 2 * k, *scratch = racc + pl.rows * k;

    if (ncols > 0) {
        uint64_t seed_bits = ncols + m - 1;
        int64_t d = (int64_t)(64 * nw - ncols + 1); /* zero bits prepended to the seed */
        for (uint64_t c = 0; c < pl.cols; c++) {
            load_bits(x, ncols, (int64_t)(64 * c * k), xb, k);
            for (uint64_t q = 0; q < pl.rows; q++) {
                int64_t a0 = (int64_t)nw + (int64_t)(q * k) - (int64_t)(c * k) - (int64_t)k;
                load_bits(seed, seed_bits, 64 * a0 - d, sw, 2 * k);
                tmvp(sw + k, xb, racc + q * k, k, pl.b, scratch);
            }
        }
    }
    if (ident) {
        for (uint64_t w0 = 0; w0 < mw; w0 += k) {
            uint64_t nwords = mw - w0 < k ? mw - w0 : k;
            load_bits(x, nx, (int64_t)(ncols + 64 * w0), xb, nwords);
            xor_into(racc + w0, xb, nwords);
        }
    }
    uint64_t nbytes = ceil_div(m, 8);
    for (uint64_t i = 0; i < nbytes; i++) out[i] = (uint8_t)(racc[i / 8] >> (8 * (i % 8)));
    if (m % 8) out[nbytes - 1] &= (uint8_t)((1u << (m % 8)) - 1);
    free(mem);
    return PA_OK;
}

int pa_toeplitz_hash(const uint8_t *x, uint64_t n, const uint8_t *seed, uint8_t *out, uint64_t m,
                     int impl, uint64_t block_words, uint64_t base_words) {
    if (n == 0) return PA_ERR_ARG;
    return toeplitz_run(x, n, n, seed, out, m, 0, impl, block_words, base_words);
}

int pa_modified_toeplitz_hash(const uint8_t *x, uint64_t n, const uint8_t *seed, uint8_t *out,
                              uint64_t m, int impl, uint64_t block_words, uint64_t base_words) {
    if (m > n) return PA_ERR_ARG;
    return toeplitz_run(x, n, n - m, seed, out, m, 1, impl, block_words, base_words);
}

uint64_t pa_scratch_bytes(uint64_t n, uint64_t m, uint64_t block_words, uint64_t base_words) {
    uint64_t mw = ceil_div(m, 64), nw = ceil_div(n, 64);
    if (mw == 0 || nw == 0 || base_words > PA_BASE_MAX) return 0;
    plan_t pl = make_plan(mw, nw, block_words, base_words, resolve_impl(PA_IMPL_AUTO));
    return pl.k ? 8 * plan_words(&pl) : 0;
}
