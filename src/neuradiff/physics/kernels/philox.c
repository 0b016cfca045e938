/* Counter-based random numbers: Philox4x32-10 (Salmon, Moraes, Dror and Shaw, "Parallel random numbers: as easy as
 * 1, 2, 3", SC 2011), uniform and standard-normal fields. Block m of field f under key (k0, k1) is Philox4x32-10 of
 * the counter (m mod 2^32, m / 2^32, f, 0); its four 32-bit words w_0..w_3 give elements j*q + m (j = 0..3) of a
 * field of 4q elements (the caller keeps the first n <= 4q). Every element is a function of (key, field, index)
 * alone, so any thread count, and the same arithmetic anywhere else (random_numbers.py, in torch), gives the same
 * words. Uniform: (w >> 8) 2^-24 in float32, w 2^-32 in float64. Normal (Box-Muller, one pair per two words): r =
 * sqrt(-2 ln u1), u1 = ((w_a >> 8) + 1) 2^-24 in (0, 1] (float64: (w_a + 1) 2^-32), and angle 2 pi u2 with u2 from
 * w_b as the uniform; elements r cos, r sin. In float32 the logarithm is common.h's and the sine and cosine are
 * polynomials on an eighth of the circle, so the loops vectorise (against the exact transform of the same words:
 * within 2.8e-7 max(|z|, 1), 6.2e-7 at most, over 16.8 million numbers); in float64 libm's. */
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

/* Uniform numbers in [0, 1): out[j*q + m] for j = 0..3, m < q (4q elements). */
int FN(philox_uniform)(uint32_t k0, uint32_t k1, uint32_t field, int64_t q, REAL *out, int threads) {
    (void)threads;
    _Pragma("omp parallel for simd num_threads(threads) schedule(static) if (parallel: q >= 2 * MIN_BLOCKS_PER_THREAD)")
    for (int64_t m = 0; m < q; ++m) {
        PHILOX_BLOCK(m)
        out[m] = uniform_of(c0);
        out[q + m] = uniform_of(c1);
        out[2 * q + m] = uniform_of(c2);
        out[3 * q + m] = uniform_of(c3);
    }
    return 0;
}

/* Standard-normal numbers: out[j*q + m] for j = 0..3, m < q (4q elements); words 0, 1 and 2, 3 are Box-Muller pairs. */
int FN(philox_normal)(uint32_t k0, uint32_t k1, uint32_t field, int64_t q, REAL *out, int threads) {
    (void)threads;
    _Pragma("omp parallel for simd num_threads(threads) schedule(static) if (parallel: q >= 2 * MIN_BLOCKS_PER_THREAD)")
    for (int64_t m = 0; m < q; ++m) {
        PHILOX_BLOCK(m)
        REAL s, c;
        const REAL r0 = RADIUS(c0);
        sincos_turn(uniform_of(c1), &s, &c);
        out[m] = r0 * c;
        out[q + m] = r0 * s;
        const REAL r1 = RADIUS(c2);
        sincos_turn(uniform_of(c3), &s, &c);
        out[2 * q + m] = r1 * c;
        out[3 * q + m] = r1 * s;
    }
    return 0;
}
