/* Philox4x32-10 (Salmon, Moraes, Dror and Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC 2011): the words
 * of a field's blocks, made 16 or 8 blocks at a time with AVX-512 or AVX2 instructions where the compiler targets
 * them, and their uniform and Box-Muller normal numbers (the layout and the transforms: philox.c). Included by
 * philox.c (the fields) and reference_step.c (a step's cascades and noise made from their key, without the fields).
 */
#ifndef NEURADIFF_KERNEL_PHILOX_H
#define NEURADIFF_KERNEL_PHILOX_H

#include <stdint.h>

#include "common.h"

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

/* One round on the counter words c0..c3 with the round key (k0, k1), then the key bumped. */
#define PHILOX_ROUND                                                                                            \
    {                                                                                                           \
        const uint64_t p0_ = (uint64_t)PHILOX_M0 * c0, p1_ = (uint64_t)PHILOX_M1 * c2;                          \
        const uint32_t n0_ = (uint32_t)(p1_ >> 32) ^ c1 ^ k0_, n2_ = (uint32_t)(p0_ >> 32) ^ c3 ^ k1_;          \
        c1 = (uint32_t)p1_;                                                                                     \
        c3 = (uint32_t)p0_;                                                                                     \
        c0 = n0_;                                                                                               \
        c2 = n2_;                                                                                               \
        k0_ += PHILOX_W0;                                                                                       \
        k1_ += PHILOX_W1;                                                                                       \
    }

/* The four words (c0..c3, in place) of block m of field f under key (k0, k1). */
#define PHILOX_BLOCK(m)                                                                                         \
    uint32_t c0 = (uint32_t)(m), c1 = (uint32_t)((uint64_t)(m) >> 32), c2 = field, c3 = 0u;                   \
    {                                                                                                           \
        uint32_t k0_ = k0, k1_ = k1;                                                                            \
        PHILOX_ROUND PHILOX_ROUND PHILOX_ROUND PHILOX_ROUND PHILOX_ROUND                                        \
        PHILOX_ROUND PHILOX_ROUND PHILOX_ROUND PHILOX_ROUND PHILOX_ROUND                                        \
    }

#ifdef FAST_LOG
static inline __attribute__((always_inline)) float uniform_of(uint32_t w) {
    return (float)(int)(w >> 8) * 5.9604644775390625e-08f;
}
static inline __attribute__((always_inline)) float open_uniform_of(uint32_t w) {
    return (float)(int)((w >> 8) + 1u) * 5.9604644775390625e-08f;
}
/* sin and cos of 2 pi u for u in [0, 1): the quadrant from 4u, the rest folded onto [0, pi/4] and Taylor series to
 * the ninth (sine) and eighth (cosine) power there (truncation below 3e-8). */
static inline __attribute__((always_inline)) void sincos_turn(float u, float *s, float *c) {
    const float t = u * 4.0f;
    const int q = (int)t;
    const float f = t - (float)q;
    const int upper = f > 0.5f;
    const float a = (upper ? 1.0f - f : f) * 1.57079632679489662f, a2 = a * a;
    const float sa =
        a * (1.0f + a2 * (-1.66666667e-1f + a2 * (8.33333333e-3f + a2 * (-1.98412698e-4f + a2 * 2.75573192e-6f))));
    const float ca = 1.0f + a2 * (-0.5f + a2 * (4.16666667e-2f + a2 * (-1.38888889e-3f + a2 * 2.48015873e-5f)));
    const float sf = upper ? ca : sa, cf = upper ? sa : ca; /* sin and cos of f pi / 2 */
    const float s0 = (q & 1) ? cf : sf, c0 = (q & 1) ? -sf : cf;
    const float sign = (q & 2) ? -1.0f : 1.0f;
    *s = sign * s0;
    *c = sign * c0;
}
#define RADIUS(w) sqrtf(-2.0f * fast_log(open_uniform_of(w)))
#else
static inline double uniform_of(uint32_t w) { return (double)w * 2.3283064365386963e-10; }
static inline double open_uniform_of(uint32_t w) { return ((double)w + 1.0) * 2.3283064365386963e-10; }
static inline void sincos_turn(double u, double *s, double *c) {
    const double a = 6.283185307179586477 * u;
    *s = sin(a);
    *c = cos(a);
}
#define RADIUS(w) sqrt(-2.0 * log(open_uniform_of(w)))
#endif

/* Blocks per call below which one thread does the work. */
#define MIN_BLOCKS_PER_THREAD 8192
/* Blocks per chunk: the words of a chunk are made in a loop of their own (into a buffer that stays in the L1 cache),
 * then turned into numbers. A multiple of 16, and of 2^32 a divisor: a chunk's counters share their high word. */
#define CHUNK 256

#if defined(__AVX512F__) && !defined(PHILOX_NO_AVX512) && !defined(PHILOX_PLAIN)
#include <immintrin.h>
/* The vector primitives of the words' loop, 16 lanes of 32 bits: a lane per block. */
#define PHILOX_LANES 16
typedef __m512i vec;
static inline __attribute__((always_inline)) vec v_set1(uint32_t x) { return _mm512_set1_epi32((int)x); }
static inline __attribute__((always_inline)) vec v_wide(uint32_t x) { return _mm512_set1_epi64(x); }
static inline __attribute__((always_inline)) vec v_iota(void) {
    return _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}
static inline __attribute__((always_inline)) vec v_add(vec a, vec b) { return _mm512_add_epi32(a, b); }
static inline __attribute__((always_inline)) vec v_xor3(vec a, vec b, vec c) {
    return _mm512_ternarylogic_epi32(a, b, c, 0x96);
}
static inline __attribute__((always_inline)) void v_store(uint32_t *p, vec a) { _mm512_storeu_si512(p, a); }
/* The high and low 32 bits of M c in each lane (the even and the odd lanes' 64-bit products, blended back). */
static inline __attribute__((always_inline)) void v_mulhilo(vec c, vec M, vec *hi, vec *lo) {
    const vec pe = _mm512_mul_epu32(c, M), po = _mm512_mul_epu32(_mm512_srli_epi64(c, 32), M);
    *hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(pe, 32), po);
    *lo = _mm512_mask_blend_epi32(0xAAAA, pe, _mm512_slli_epi64(po, 32));
}
#elif defined(__AVX2__) && !defined(PHILOX_PLAIN)
#include <immintrin.h>
/* The same with 8 lanes. */
#define PHILOX_LANES 8
typedef __m256i vec;
static inline __attribute__((always_inline)) vec v_set1(uint32_t x) { return _mm256_set1_epi32((int)x); }
static inline __attribute__((always_inline)) vec v_wide(uint32_t x) { return _mm256_set1_epi64x(x); }
static inline __attribute__((always_inline)) vec v_iota(void) { return _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7); }
static inline __attribute__((always_inline)) vec v_add(vec a, vec b) { return _mm256_add_epi32(a, b); }
static inline __attribute__((always_inline)) vec v_xor3(vec a, vec b, vec c) {
    return _mm256_xor_si256(_mm256_xor_si256(a, b), c);
}
static inline __attribute__((always_inline)) void v_store(uint32_t *p, vec a) { _mm256_storeu_si256((vec *)p, a); }
static inline __attribute__((always_inline)) void v_mulhilo(vec c, vec M, vec *hi, vec *lo) {
    const vec pe = _mm256_mul_epu32(c, M), po = _mm256_mul_epu32(_mm256_srli_epi64(c, 32), M);
    *hi = _mm256_blend_epi32(_mm256_srli_epi64(pe, 32), po, 0xAA);
    *lo = _mm256_blend_epi32(pe, _mm256_slli_epi64(po, 32), 0xAA);
}
#endif

#if PHILOX_LANES == 16
/* The words of blocks m + j, j < n (n rounded up to the lanes; the buffers hold CHUNK words each). With AVX-512 a
 * block's counter words sit in the low halves of 64-bit lanes, 8 blocks a vector and two vectors at a time: the
 * 32 x 32 -> 64-bit multiply gives the high word by one shift and the low word in place (the multiply reads only
 * the low halves, so the high halves the xors leave there never reach a word), and a narrowing store keeps the low
 * halves: a third fewer instructions a round than the 32-bit lanes below. */
static inline void chunk_words(uint32_t k0, uint32_t k1, uint32_t field, int64_t m, int n, uint32_t w[4][CHUNK]) {
    const __m512i M0 = _mm512_set1_epi64(PHILOX_M0), M1 = _mm512_set1_epi64(PHILOX_M1);
    const __m512i iota = _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7), eight = _mm512_set1_epi64(8);
    const __m512i high = _mm512_set1_epi64((uint32_t)((uint64_t)m >> 32)), f = _mm512_set1_epi64(field);
    for (int j = 0; j < n; j += 16) {
        /* a chunk's low counter words do not wrap: m is a multiple of CHUNK, a divisor of 2^32 */
        __m512i a0 = _mm512_add_epi64(_mm512_set1_epi64((uint32_t)(m + j)), iota), b0 = _mm512_add_epi64(a0, eight);
        __m512i a1 = high, b1 = high, a2 = f, b2 = f, a3 = _mm512_setzero_si512(), b3 = a3;
        uint32_t ka = k0, kb = k1;
        for (int r = 0; r < 10; ++r) {
            const __m512i K0 = _mm512_set1_epi64(ka), K1 = _mm512_set1_epi64(kb);
            const __m512i pa0 = _mm512_mul_epu32(a0, M0), pa2 = _mm512_mul_epu32(a2, M1);
            const __m512i pb0 = _mm512_mul_epu32(b0, M0), pb2 = _mm512_mul_epu32(b2, M1);
            a0 = _mm512_ternarylogic_epi64(_mm512_srli_epi64(pa2, 32), a1, K0, 0x96);
            a2 = _mm512_ternarylogic_epi64(_mm512_srli_epi64(pa0, 32), a3, K1, 0x96);
            b0 = _mm512_ternarylogic_epi64(_mm512_srli_epi64(pb2, 32), b1, K0, 0x96);
            b2 = _mm512_ternarylogic_epi64(_mm512_srli_epi64(pb0, 32), b3, K1, 0x96);
            a1 = pa2;
            a3 = pa0;
            b1 = pb2;
            b3 = pb0;
            ka += PHILOX_W0;
            kb += PHILOX_W1;
        }
        _mm512_storeu_si512(w[0] + j, _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi64_epi32(a0)), _mm512_cvtepi64_epi32(b0), 1));
        _mm512_storeu_si512(w[1] + j, _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi64_epi32(a1)), _mm512_cvtepi64_epi32(b1), 1));
        _mm512_storeu_si512(w[2] + j, _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi64_epi32(a2)), _mm512_cvtepi64_epi32(b2), 1));
        _mm512_storeu_si512(w[3] + j, _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi64_epi32(a3)), _mm512_cvtepi64_epi32(b3), 1));
    }
}
#elif defined(PHILOX_LANES) /* the 8 lanes of AVX2 */
/* The words of blocks m + j, j < n (n rounded up to the lanes; the buffers hold CHUNK words each). */
static inline void chunk_words(uint32_t k0, uint32_t k1, uint32_t field, int64_t m, int n, uint32_t w[4][CHUNK]) {
    const vec M0 = v_wide(PHILOX_M0), M1 = v_wide(PHILOX_M1), iota = v_iota();
    const vec high = v_set1((uint32_t)((uint64_t)m >> 32)), f = v_set1(field), zero = v_set1(0u);
    for (int j = 0; j < n; j += PHILOX_LANES) {
        vec c0 = v_add(v_set1((uint32_t)(m + j)), iota), c1 = high, c2 = f, c3 = zero;
        uint32_t a = k0, b = k1;
        for (int r = 0; r < 10; ++r) {
            vec h0, l0, h1, l1;
            v_mulhilo(c0, M0, &h0, &l0);
            v_mulhilo(c2, M1, &h1, &l1);
            c0 = v_xor3(h1, c1, v_set1(a));
            c2 = v_xor3(h0, c3, v_set1(b));
            c1 = l1;
            c3 = l0;
            a += PHILOX_W0;
            b += PHILOX_W1;
        }
        v_store(w[0] + j, c0);
        v_store(w[1] + j, c1);
        v_store(w[2] + j, c2);
        v_store(w[3] + j, c3);
    }
}
#else
#define PHILOX_LANES 1
static inline void chunk_words(uint32_t k0, uint32_t k1, uint32_t field, int64_t m0, int n, uint32_t w[4][CHUNK]) {
    _Pragma("omp simd") for (int j = 0; j < n; ++j) {
        PHILOX_BLOCK(m0 + j)
        w[0][j] = c0;
        w[1][j] = c1;
        w[2][j] = c2;
        w[3][j] = c3;
    }
}
#endif

/* For each chunk of the q blocks (the threads share the chunks): its words in w, then the statements given, with o
 * the chunk's first element and n its block count. */
#define CHUNKS(...)                                                                                             \
    _Pragma("omp parallel for num_threads(threads) schedule(static) if (parallel: q >= 2 * MIN_BLOCKS_PER_THREAD)") \
    for (int64_t m = 0; m < q; m += CHUNK) {                                                                    \
        uint32_t w[4][CHUNK] __attribute__((aligned(64)));                                                      \
        const int n = (int)(q - m < CHUNK ? q - m : CHUNK);                                                     \
        chunk_words(k0, k1, field, m, (n + PHILOX_LANES - 1) / PHILOX_LANES * PHILOX_LANES, w);                \
        REAL *o = out + m;                                                                                      \
        __VA_ARGS__                                                                                             \
    }

/* The four normal numbers of words j of a chunk (Box-Muller pairs from words 0, 1 and 2, 3), assigned to z0..z3: the
 * elements j, q + j, 2q + j and 3q + j of the chunk's field. */
#define NORMALS(w, j, z0, z1, z2, z3)                                                                           \
    {                                                                                                           \
        REAL s_, c_;                                                                                            \
        const REAL r0_ = RADIUS((w)[0][j]);                                                                     \
        sincos_turn(uniform_of((w)[1][j]), &s_, &c_);                                                           \
        z0 = r0_ * c_;                                                                                          \
        z1 = r0_ * s_;                                                                                          \
        const REAL r1_ = RADIUS((w)[2][j]);                                                                     \
        sincos_turn(uniform_of((w)[3][j]), &s_, &c_);                                                           \
        z2 = r1_ * c_;                                                                                          \
        z3 = r1_ * s_;                                                                                          \
    }

/* The words of block m of field f under key (k0, k1), one block at a time (where a few scattered blocks are needed). */
static inline void philox_block(uint32_t k0, uint32_t k1, uint32_t field, int64_t m, uint32_t w[4]) {
    PHILOX_BLOCK(m)
    w[0] = c0;
    w[1] = c1;
    w[2] = c2;
    w[3] = c3;
}

#endif
