/* What the fused kernels share (void_step.c, reference_step.c): the precision (REAL = float or double, SUFFIX names
 * the exported functions), the float32 logarithm, the row loops of the 5-point stencils on periodic or no-flux grids,
 * and how a call spreads over threads. Included by each kernel's source; fused.py compiles each source twice.
 */
#ifndef NEURADIFF_KERNEL_COMMON_H
#define NEURADIFF_KERNEL_COMMON_H

#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#ifndef REAL
#define REAL float
#endif
#ifndef SUFFIX
#define SUFFIX _f32
#endif
#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define FN(name) CAT(name, SUFFIX)

#ifdef FAST_LOG
/* Natural logarithm of a positive normal float: exponent by bit manipulation, then ln(1 + m) = m - m^2/2 + m^3 P(m)
 * for the mantissa m in [sqrt(1/2) - 1, sqrt(2) - 1) (Cephes' reduction), P a degree-6 polynomial fitted for the
 * smallest largest relative error (two terms fewer than Cephes' degree 8, which was 0.83 ulp). Branch-free, so loops
 * vectorise. Against double-precision log over every float in [1e-6, 4): at most 1.16 ulp of the result (where
 * |ln x| > 1e-3), 1.03e-7 relative, 5.1e-7 absolute (test_fused.py checks the compiled function). */
static inline __attribute__((always_inline)) float fast_log(float x) {
    union {
        float f;
        unsigned int i;
    } u = {x};
    float e = (float)((int)((u.i >> 23) & 0xffu) - 126);
    u.i = (u.i & 0x007fffffu) | 0x3f000000u; /* mantissa in [0.5, 1) */
    float m = u.f;
    const int low = m < 0.707106781186547524f;
    e = low ? e - 1.0f : e;
    m = low ? m + m - 1.0f : m - 1.0f;
    const float z = m * m;
    float y = 8.7004370987e-2f;
    y = y * m - 1.4267490804e-1f;
    y = y * m + 1.4914768934e-1f;
    y = y * m - 1.6577585042e-1f;
    y = y * m + 1.9963063300e-1f;
    y = y * m - 2.5001338124e-1f;
    y = y * m + 3.3333909512e-1f;
    y = y * m * z;
    y += -2.12194440e-4f * e;
    y += -0.5f * z;
    return m + y + 0.693359375f * e;
}
#define LOG(x) fast_log(x)

#else
#define LOG(x) ((REAL)log(x))
#endif

#define IDX(y, x) ((size_t)(y) * (size_t)W + (size_t)(x))

/* ROW_LOOP(y, statements) runs the statements for every pixel k of row y of an H x W grid with its neighbours
 * ke, kw, ks, kn: wrapped around on a periodic grid (periodic != 0), else the cell itself beyond a wall (mirror ghost
 * cells: zero normal gradient and zero flux through the wall). The interior columns form a loop without edge
 * handling, which the compiler vectorises. GRID_LOOP runs them for every row. */
#define ROW_LOOP(y, ...) ROW_LOOP_P(y, _Pragma("omp simd"), __VA_ARGS__)

/* The parts every row loop shares: the row offsets (r_, rn_, rs_ of row y and its north and south neighbours) and
 * the statements at the first and the last column, whose east or west neighbour wraps around or is a wall. */
#define ROW_HEAD(y)                                                                                             \
    const size_t r_ = (size_t)(y) * (size_t)W;                                                                  \
    const size_t rn_ = (size_t)((y) == 0 ? (periodic ? H - 1 : 0) : (y) - 1) * (size_t)W;                       \
    const size_t rs_ = (size_t)((y) == H - 1 ? (periodic ? 0 : H - 1) : (y) + 1) * (size_t)W;
#define ROW_FIRST(...)                                                                                          \
    {                                                                                                           \
        const size_t k = r_, ke = r_ + (W > 1 ? 1 : 0), kw = periodic ? r_ + (size_t)W - 1 : r_;               \
        const size_t ks = rs_, kn = rn_;                                                                        \
        const REAL w_ = 1;                                                                                      \
        (void)w_;                                                                                               \
        __VA_ARGS__                                                                                             \
    }
#define ROW_LAST(...)                                                                                           \
    if (W > 1) {                                                                                                \
        const size_t x_ = (size_t)W - 1, k = r_ + x_, ke = periodic ? r_ : k, kw = k - 1;                       \
        const size_t ks = rs_ + x_, kn = rn_ + x_;                                                              \
        const REAL w_ = 1;                                                                                      \
        (void)w_;                                                                                               \
        __VA_ARGS__                                                                                             \
    }

/* ROW_LOOP with the given pragma before the interior loop (e.g. a simd reduction). */
#define ROW_LOOP_P(y, PRAGMA, ...)                                                                              \
    {                                                                                                           \
        ROW_HEAD(y)                                                                                             \
        ROW_FIRST(__VA_ARGS__)                                                                                  \
        PRAGMA for (size_t x_ = 1; x_ < (size_t)W - 1; ++x_) {                                                 \
            const size_t k = r_ + x_, ke = k + 1, kw = k - 1, ks = rs_ + x_, kn = rn_ + x_;                     \
            __VA_ARGS__                                                                                         \
        }                                                                                                       \
        ROW_LAST(__VA_ARGS__)                                                                                   \
    }

#define GRID_LOOP(...)                                                                                          \
    for (int y = 0; y < H; ++y) ROW_LOOP(y, __VA_ARGS__)

/* ROW_LOOP for statements that write only their own pixel's outputs, from inputs the loop does not write (the
 * forward's potentials and update): the interior runs in whole vectors of VEC pixels, the last one shifted left to
 * end at column W - 2, so the few pixels it shares with the one before are computed twice with the same result
 * instead of in a scalar remainder loop. Not for loops that accumulate. */
#ifndef VEC
#define VEC 16
#endif
#define ROW_LOOP_IDEMPOTENT(y, ...)                                                                             \
    {                                                                                                           \
        ROW_HEAD(y)                                                                                             \
        ROW_FIRST(__VA_ARGS__)                                                                                  \
        const size_t in_ = W > 2 ? (size_t)W - 2 : 0;                                                           \
        if (in_ >= VEC) {                                                                                       \
            for (size_t x0_ = 1;; x0_ += VEC) {                                                                 \
                if (x0_ + VEC > in_ + 1) x0_ = in_ + 1 - VEC;                                                   \
                _Pragma("omp simd") for (size_t j_ = 0; j_ < VEC; ++j_) {                                      \
                    const size_t k = r_ + x0_ + j_, ke = k + 1, kw = k - 1, ks = rs_ + x0_ + j_;                \
                    const size_t kn = rn_ + x0_ + j_;                                                           \
                    __VA_ARGS__                                                                                 \
                }                                                                                               \
                if (x0_ + VEC >= in_ + 1) break;                                                                \
            }                                                                                                   \
        } else {                                                                                                \
            for (size_t x_ = 1; x_ < (size_t)W - 1; ++x_) {                                                     \
                const size_t k = r_ + x_, ke = k + 1, kw = k - 1, ks = rs_ + x_, kn = rn_ + x_;                 \
                __VA_ARGS__                                                                                     \
            }                                                                                                   \
        }                                                                                                       \
        ROW_LAST(__VA_ARGS__)                                                                                   \
    }

/* ROW_LOOP_P for statements that accumulate (the backward's passes): the interior runs in whole vectors of VEC
 * pixels; the pixels left over at the end of the row (fewer than VEC) run as one more whole vector shifted left to
 * end at column W - 2, whose lanes that repeat pixels already done carry the weight w_ = 0 (else w_ = 1). The
 * statements multiply what they add by w_ and may only assign what is the same when computed twice. A scalar
 * remainder loop would cost as much as the rest of a 128-pixel row. */
#define ROW_LOOP_ACCUM(y, PRAGMA, ...)                                                                          \
    {                                                                                                           \
        ROW_HEAD(y)                                                                                             \
        ROW_FIRST(__VA_ARGS__)                                                                                  \
        const size_t in_ = W > 2 ? (size_t)W - 2 : 0;                                                           \
        const size_t m_ = in_ >= VEC ? in_ - in_ % VEC : in_;                                                   \
        PRAGMA for (size_t x_ = 1; x_ < 1 + m_; ++x_) {                                                         \
            const size_t k = r_ + x_, ke = k + 1, kw = k - 1, ks = rs_ + x_, kn = rn_ + x_;                     \
            const REAL w_ = 1;                                                                                  \
            (void)w_;                                                                                           \
            __VA_ARGS__                                                                                         \
        }                                                                                                       \
        if (m_ < in_) {                                                                                         \
            const size_t x0_ = in_ + 1 - VEC;                                                                   \
            PRAGMA for (size_t j_ = 0; j_ < VEC; ++j_) {                                                        \
                const size_t x_ = x0_ + j_;                                                                     \
                const size_t k = r_ + x_, ke = k + 1, kw = k - 1, ks = rs_ + x_, kn = rn_ + x_;                 \
                const REAL w_ = x_ >= 1 + m_ ? (REAL)1 : (REAL)0;                                               \
                __VA_ARGS__                                                                                     \
            }                                                                                                   \
        }                                                                                                       \
        ROW_LAST(__VA_ARGS__)                                                                                   \
    }

/* The most threads one element's rows are split between. */
#define MAX_THREADS 64

/* Rows per thread below which the kernels run on one thread (the threads' start-up would cost more). */
#define MIN_ROWS_PER_THREAD 16

/* How a call spreads over `threads` threads: 0 one thread, 1 batch elements in parallel, 2 rows in parallel. */
static int thread_plan(int threads, int B, int H, int W) {
#ifndef _OPENMP
    (void)threads;
    (void)B;
    (void)H;
    (void)W;
    return 0; /* built without OpenMP: one thread */
#else
    if (threads <= 1 || (size_t)B * (size_t)H * (size_t)W < (size_t)2 * MIN_ROWS_PER_THREAD * 64) return 0;
    if (B >= threads) return 1;
    return H >= threads * MIN_ROWS_PER_THREAD ? 2 : 0;
#endif
}

/* The calling thread's number in its team (0 in a team of one, or without OpenMP): which work buffer it uses. */
static inline int thread_slot(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* Row y's work of a step reads the potentials of rows y - 1, y and y + 1: POT(y0, y1) computes those of rows
 * [y0, y1), ROW(y) does row y's work. Each row's potentials are computed just before the row that first needs them, so
 * they are read back from cache; on a periodic grid row H - 1 comes first, for row 0. The forward of both kernels and
 * the backward's second and third passes run in this order. */
#define PIPELINE_ROWS(H, periodic, POT, ROW)                                                                    \
    {                                                                                                           \
        const int last_ = ((periodic) && (H) > 1) ? (H) - 1 : (H);                                              \
        if (last_ < (H)) POT((H) - 1, (H));                                                                     \
        int done_ = 0;                                                                                          \
        for (int y_ = 0; y_ < (H); ++y_) {                                                                      \
            const int need_ = y_ + 2 < last_ ? y_ + 2 : last_;                                                  \
            if (need_ > done_) {                                                                                \
                POT(done_, need_);                                                                              \
                done_ = need_;                                                                                  \
            }                                                                                                   \
            ROW(y_);                                                                                            \
        }                                                                                                       \
    }

/* The backward drivers of a kernel that defines Step (with H and periodic), Adjoint, S_COUNT and the row passes
 * adjoint_rows (pass 1: the adjoint of the update and the potentials' adjoints), pass2_row and pass3_row (each adding
 * a row's parameter sums to its own place in rows):
 * backward_element: one element on one thread, pass 1 of every row, then passes 2 and 3 pipelined (PIPELINE_ROWS: pass
 * 3 of a row once pass 2 of the rows it reads is done, so it finds them in cache);
 * backward_element_rows: the same on `threads` threads sharing the rows, pass by pass.
 * Each row's sums go to its own place in rows (H x S_COUNT, zeroed here), so that they can be added in row order
 * whatever the thread count. */
#define PASS2_ROWS_(y0, y1)                                                                                     \
    for (int yy_ = (y0); yy_ < (y1); ++yy_) pass2_row(st, a, yy_, rows + (size_t)yy_ * S_COUNT)
#define PASS3_ROW_(y) pass3_row(st, a, (y), rows + (size_t)(y) * S_COUNT)
#define DEFINE_BACKWARD_DRIVERS                                                                                 \
    static void backward_element(const Step *st, const Adjoint *a, int recompute, double *rows) {               \
        const int H = st->H;                                                                                    \
        memset(rows, 0, sizeof(double) * (size_t)H * S_COUNT);                                                  \
        adjoint_rows(st, a, recompute, 0, H);                                                                   \
        PIPELINE_ROWS(H, st->periodic, PASS2_ROWS_, PASS3_ROW_)                                                 \
    }                                                                                                           \
    static void backward_element_rows(const Step *st, const Adjoint *a, int recompute, double *rows,            \
                                      int threads) {                                                            \
        (void)threads; /* without OpenMP the pragmas go and the rows run in turn */                            \
        const int H = st->H;                                                                                    \
        memset(rows, 0, sizeof(double) * (size_t)H * S_COUNT);                                                  \
        _Pragma("omp parallel num_threads(threads)") {                                                          \
            _Pragma("omp for schedule(static)") for (int y = 0; y < H; ++y) adjoint_rows(st, a, recompute, y, y + 1); \
            _Pragma("omp for schedule(static)") for (int y = 0; y < H; ++y)                                     \
                pass2_row(st, a, y, rows + (size_t)y * S_COUNT);                                                \
            _Pragma("omp for schedule(static)") for (int y = 0; y < H; ++y)                                     \
                pass3_row(st, a, y, rows + (size_t)y * S_COUNT);                                                \
        }                                                                                                       \
    }

/* The backward over a batch, inside a kernel's backward entry point that has Step st, B, H, plan, slots, threads, pot,
 * sums (B x H x S_COUNT) and a macro ADJOINT_OF(b, slot) declaring `Adjoint a` and `double *rows` for element b with
 * work slot `slot`: with plan 2 each element's rows are shared between the threads, else the elements are; then
 * g[S_COUNT] holds the rows' sums added in order (the same gradients whatever the thread count). */
#define BACKWARD_BATCH(g)                                                                                       \
    if (plan == 2) { /* rows split: the elements in turn */                                                     \
        for (int b = 0; b < B; ++b) {                                                                           \
            ADJOINT_OF(b, 0)                                                                                    \
            backward_element_rows(&st, &a, pot == NULL, rows, threads);                                         \
        }                                                                                                       \
    } else {                                                                                                    \
        _Pragma("omp parallel for num_threads(slots) schedule(static) if (plan == 1)")                         \
        for (int b = 0; b < B; ++b) {                                                                           \
            const int slot = thread_slot();                                                                     \
            ADJOINT_OF(b, slot)                                                                                 \
            backward_element(&st, &a, pot == NULL, rows);                                                       \
        }                                                                                                       \
    }                                                                                                           \
    double g[S_COUNT] = {0};                                                                                    \
    for (size_t r_ = 0; r_ < (size_t)B * (size_t)H; ++r_)                                                       \
        for (int i_ = 0; i_ < S_COUNT; ++i_) g[i_] += sums[r_ * S_COUNT + i_];

#endif
