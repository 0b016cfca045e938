/* Counter-based random numbers: Philox4x32-10 (Salmon, Moraes, Dror and Shaw, "Parallel random numbers: as easy as
 * 1, 2, 3", SC 2011), uniform and standard-normal fields. Block m of field f under key (k0, k1) is Philox4x32-10 of
 * the counter (m mod 2^32, m / 2^32, f, 0); its four 32-bit words w_0..w_3 give elements j*q + m (j = 0..3) of a
 * field of 4q elements (the caller keeps the first n <= 4q). Every element is a function of (key, field, index)
 * alone, so any thread count, and the same arithmetic anywhere else (random_numbers.py, in torch), gives the same
 * words. Uniform: (w >> 8) 2^-24 in float32, w 2^-32 in float64. Normal (Box-Muller, one pair per two words): r =
 * sqrt(-2 ln u1), u1 = ((w_a >> 8) + 1) 2^-24 in (0, 1] (float64: (w_a + 1) 2^-32), and angle 2 pi u2 with u2 from
 * w_b as the uniform; elements r cos, r sin. In float32 the logarithm is common.h's and the sine and cosine are
 * polynomials on an eighth of the circle, so the loops vectorise (against the exact transform of the same words:
 * within 2.8e-7 max(|z|, 1), 6.2e-7 at most, over 16.8 million numbers); in float64 libm's.
 * The words are made 16 or 8 blocks at a time with AVX-512 or AVX2 instructions where the compiler targets them
 * (philox.h; with AVX2 a 32 x 32 -> 64-bit multiply of the even and of the odd lanes, with the high and low halves
 * blended back): uniform fields 2.0x and 1.5x, normal ones 1.5x and 1.3x faster than the plain C loop, which the
 * compiler vectorises with 64-bit lanes (AMD EPYC, one thread, 2^19 numbers). With AVX-512 the counters now sit in
 * 64-bit lanes, which takes a third fewer instructions a round: on an Intel Xeon 2^19 uniform numbers took 243 ->
 * 217 us, normal ones 428-445 -> 410-414 us. The words are the same on every path; -DPHILOX_NO_AVX512 or
 * -DPHILOX_PLAIN builds the narrower ones (the tests do). The fields' code lives in philox.h, which
 * reference_step.c includes too: it makes a step's numbers from their key while it writes the increment. */
#include "philox.h"

/* Uniform numbers in [0, 1): out[j*q + m] for j = 0..3, m < q (4q elements). */
int FN(philox_uniform)(uint32_t k0, uint32_t k1, uint32_t field, int64_t q, REAL *out, int threads) {
    (void)threads;
    CHUNKS(for (int i = 0; i < 4; ++i) {
        _Pragma("omp simd") for (int j = 0; j < n; ++j) o[i * q + j] = uniform_of(w[i][j]);
    })
    return 0;
}

/* Standard-normal numbers: out[j*q + m] for j = 0..3, m < q (4q elements); words 0, 1 and 2, 3 are Box-Muller pairs. */
int FN(philox_normal)(uint32_t k0, uint32_t k1, uint32_t field, int64_t q, REAL *out, int threads) {
    (void)threads;
    CHUNKS(_Pragma("omp simd") for (int j = 0; j < n; ++j) NORMALS(w, j, o[j], o[q + j], o[2 * q + j], o[3 * q + j]))
    return 0;
}
