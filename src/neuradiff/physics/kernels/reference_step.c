/* Fused explicit Euler step of the reference void model (the published code's discretisation) and its adjoint.
 * Compiled twice, with REAL = float and REAL = double (see fused.py); shares common.h with void_step.c.
 *
 * Forward: u = s + h * rate(s), state [B, 3, H, W] (c_v, c_i, eta), on a periodic grid or between no-flux walls:
 *
 *   rate_v = M_v lap(mu_v) - R,   rate_i = M_i lap(mu_i) - R,   rate_eta = -L mu_eta,
 *   M_v = D_v c_v / kBT,  M_i = D_i c_i / kBT  (c as it is, no clamp),  R = (R_bulk + R_surf eta^2) c_v c_i,
 *   mu_v   = hh A_v + 2 j (c_v - 1) - kappa_v lap(c_v),   mu_i = hh A_i + 2 j c_i - kappa_i lap(c_i),
 *   mu_eta = 2 (eta - 1) f_s + 2 eta f_v - kappa_eta lap(eta),
 *   hh = (eta - 1)^2,  j = eta^2,  f_v = (c_v - 1)^2 + c_i^2,  s = 1 - c_v - c_i,
 *   l_x = ln max(x, eps) (x = c_v, c_i, s),  keep = [s >= eps],
 *   f_s = keep (E_v c_v + E_i c_i + kBT (c_v l_v + c_i l_i + s l_s)),
 *   A_v = keep (E_v + kBT (l_v - l_s)),  A_i = keep (E_i + kBT (l_i - l_s)).
 *
 * With the projection, u + f / fdiv (f: a step's forcing increment shared by its fdiv sub-steps) is clamped to
 * [0, 1] field by field, with the count of values outside [0, 1] per field (ReferenceVoidModel.project).
 *
 * Backward: given ub = dL/d(output), s_bar = dL/ds, f_bar += dL/df and the gradients of the nine learned parameters
 * (E_v, E_i, kBT, kappa_v, kappa_i, kappa_eta, D_v, D_i, L), accumulated in double. It is the adjoint of the
 * expressions above as autograd differentiates them (the plain PyTorch path is the reference; the tests compare the
 * two):
 *   - the clamp passes the adjoint where the value was inside [0, 1], bounds included (torch.clamp's rule);
 *   - d l_x / dx = [x >= eps] / max(x, eps): the floor's derivative is 0 below it, and keep, a step, has none;
 *   - A_v, A_i are the published code's df_s/dc: not the derivative of its f_s where a floor is active. The adjoint
 *     of f_s (through mu_eta) takes the derivative of f_s as written: d(c l_c)/dc = l_c + [c >= eps] and, where
 *     keep = 1 (so s >= eps), d(s l_s)/ds = l_s + 1, so
 *       df_s/dc_v = keep (E_v + kBT (l_v + [c_v >= eps] - l_s - 1)), and likewise for c_i;
 *   - lap is symmetric on both grids (periodic, or mirror ghost cells at no-flux walls), so its adjoint is itself.
 * The backward takes one elementwise pass and two stencil passes, pipelined by rows, recomputing the local terms from
 * the state; the tape of a step is its input state, the three chemical potentials and the clamp mask.
 * Threads (OpenMP, where the compiler has it): a call shares its batch elements between the threads it is given, or
 * with fewer elements than threads the rows of each element. Every thread count gives the same bits: the updates are
 * per pixel and the parameter sums are kept per row and added in row order.
 */
#include "common.h"
#include "philox.h"

/* parameter vector (fused._values): the nine learned parameters, R_bulk, R_surf, the log floor eps and a slot this
 * kernel does not read (the conservative kernel's saturation floor) */
enum { P_EV, P_EI, P_T, P_KV, P_KI, P_KE, P_DV, P_DI, P_L, P_RB, P_RS, P_EPS, P_UNUSED, P_COUNT };

/* The local (pointwise) terms of the free energy at one pixel. */
typedef struct {
    REAL keep;          /* [s >= eps] */
    REAL fs, av, ai;    /* f_s, A_v, A_i */
    REAL ent, lvs, lis; /* keep (c_v l_v + c_i l_i + s l_s), keep (l_v - l_s), keep (l_i - l_s): d/dkBT of f_s, A */
    REAL dfv, dfi;      /* df_s/dc_v, df_s/dc_i (see the header) */
    REAL gv, gi, gs;    /* d l_v/dc_v, d l_i/dc_i, d l_s/ds */
} Local;

/* max(x, eps) as torch.clamp(x, min=eps) gives it (NaN stays NaN). */
#define FLOOR(x, eps) ((x) < (eps) ? (eps) : (x))

static inline __attribute__((always_inline)) void local_terms(REAL cv, REAL ci, const REAL *p, Local *o) {
    const REAL eps = p[P_EPS];
    const REAL s = (REAL)1 - cv - ci;
    const REAL xv = FLOOR(cv, eps), xi = FLOOR(ci, eps), xs = FLOOR(s, eps);
    const REAL lv = LOG(xv), li = LOG(xi), ls = LOG(xs);
    const REAL keep = s >= eps ? (REAL)1 : (REAL)0;
    const REAL iv = cv >= eps ? (REAL)1 : (REAL)0, ii = ci >= eps ? (REAL)1 : (REAL)0;
    const REAL ent = cv * lv + ci * li + s * ls;
    o->keep = keep;
    o->fs = keep * (p[P_EV] * cv + p[P_EI] * ci + p[P_T] * ent);
    o->av = keep * (p[P_EV] + p[P_T] * (lv - ls));
    o->ai = keep * (p[P_EI] + p[P_T] * (li - ls));
    o->ent = keep * ent;
    o->lvs = keep * (lv - ls);
    o->lis = keep * (li - ls);
    o->dfv = keep * (p[P_EV] + p[P_T] * (lv + iv - ls - (REAL)1));
    o->dfi = keep * (p[P_EI] + p[P_T] * (li + ii - ls - (REAL)1));
    o->gv = iv / xv;
    o->gi = ii / xi;
    o->gs = keep / xs;
}

/* What one call works with: the grid, the parameters and the step. */
typedef struct {
    int H, W, periodic;
    REAL p[P_COUNT];
    REAL h, idx2, mobv, mobi, fdiv;
    size_t n;
} Step;

static void step_init(Step *st, int H, int W, int periodic, const double *pd, double h, double dx, double fdiv) {
    for (int i = 0; i < P_COUNT; ++i) st->p[i] = (REAL)pd[i];
    st->H = H;
    st->W = W;
    st->periodic = periodic;
    st->h = (REAL)h;
    st->idx2 = (REAL)(1.0 / (dx * dx));
    st->mobv = st->p[P_DV] / st->p[P_T];
    st->mobi = st->p[P_DI] / st->p[P_T];
    st->fdiv = (REAL)fdiv;
    st->n = (size_t)H * (size_t)W;
}

/* 5-point Laplacian of field q at pixel k (the neighbours of the row loops). */
#define LAP(q) (((q)[ke] + (q)[kw] + (q)[ks] + (q)[kn] - (REAL)4 * (q)[k]) * idx2)

/* ---- forward --------------------------------------------------------------------------------------------------- */

/* The chemical potentials mu (3 fields) of rows y0 <= y < y1 of one element. */
static void potential_rows(const Step *st, const REAL *s, REAL *mu, int y0, int y1) {
    const int H = st->H, W = st->W, periodic = st->periodic;
    const size_t n = st->n;
    const REAL *p = st->p, idx2 = st->idx2;
    const REAL *cvp = s, *cip = s + n, *etp = s + 2 * n;
    for (int y = y0; y < y1; ++y) {
        ROW_LOOP_IDEMPOTENT(y, {
            const REAL cv = cvp[k], ci = cip[k], eta = etp[k];
            Local l;
            local_terms(cv, ci, p, &l);
            const REAL hh = (eta - (REAL)1) * (eta - (REAL)1), j = eta * eta;
            const REAL fv = (cv - (REAL)1) * (cv - (REAL)1) + ci * ci;
            mu[k] = hh * l.av + (REAL)2 * j * (cv - (REAL)1) - p[P_KV] * LAP(cvp);
            mu[n + k] = hh * l.ai + (REAL)2 * j * ci - p[P_KI] * LAP(cip);
            mu[2 * n + k] = (REAL)2 * (eta - (REAL)1) * l.fs + (REAL)2 * eta * fv - p[P_KE] * LAP(etp);
        })
    }
}

/* What one step of one batch element reads and writes. */
typedef struct {
    const REAL *s;       /* state [3, H, W] */
    REAL *u;             /* updated state [3, H, W] */
    REAL *mu;            /* potentials [3, H, W] (the tape, or a work buffer) */
    const REAL *f;       /* forcing increment [3, H, W] or NULL */
    long long *counts;   /* [3] or NULL (no projection) */
    unsigned char *mask; /* [H, W] with counts: bit c set where field c was inside [0, 1] */
} Element;

/* The projection of the pixels [r, r + w) of one element in place: add the forcing increment f / fdiv (if any), count
 * the values outside [0, 1] per field (added to cnt), clamp every field to [0, 1] and record in mask where each was
 * inside (the clamp's gradient mask). The forward runs it on each row right after the row's update. */
static inline __attribute__((always_inline)) void project_span(REAL *u, const REAL *f, REAL fdiv, long long *cnt,
                                                               unsigned char *mask, size_t n, size_t r, size_t w) {
    REAL *v = u + r, *c = u + n + r, *e = u + 2 * n + r;
    unsigned char *m = mask + r;
    int ov = 0, oc = 0, oe = 0;
#define CLAMP01(x) ((x) < 0 ? (REAL)0 : ((x) > 1 ? (REAL)1 : (x)))
#define INSIDE(x) ((unsigned char)(((x) >= 0) & ((x) <= 1)))
#define PROJECT_PIXEL(a, b, x)                                                                                  \
    {                                                                                                           \
        ov += (a < 0) | (a > 1);                                                                                \
        oc += (b < 0) | (b > 1);                                                                                \
        oe += (x < 0) | (x > 1);                                                                                \
        m[k] = (unsigned char)(INSIDE(a) | (INSIDE(b) << 1) | (INSIDE(x) << 2));                                \
        v[k] = CLAMP01(a);                                                                                      \
        c[k] = CLAMP01(b);                                                                                      \
        e[k] = CLAMP01(x);                                                                                      \
    }
    if (f) {
        const REAL *gv = f + r, *gc = f + n + r, *ge = f + 2 * n + r;
        _Pragma("omp simd reduction(+ : ov, oc, oe)") for (size_t k = 0; k < w; ++k) {
            const REAL a = v[k] + (fdiv == (REAL)1 ? gv[k] : gv[k] / fdiv);
            const REAL b = c[k] + (fdiv == (REAL)1 ? gc[k] : gc[k] / fdiv);
            const REAL x = e[k] + (fdiv == (REAL)1 ? ge[k] : ge[k] / fdiv);
            PROJECT_PIXEL(a, b, x)
        }
    } else {
        _Pragma("omp simd reduction(+ : ov, oc, oe)") for (size_t k = 0; k < w; ++k) {
            const REAL a = v[k], b = c[k], x = e[k];
            PROJECT_PIXEL(a, b, x)
        }
    }
#undef PROJECT_PIXEL
#undef INSIDE
#undef CLAMP01
    cnt[0] += ov;
    cnt[1] += oc;
    cnt[2] += oe;
}

/* The update of row y from the potentials of rows y - 1, y and y + 1, then the row's projection (with counts, added
 * to cnt). */
static inline __attribute__((always_inline)) void update_row(const Step *st, const Element *e, int y, long long *cnt) {
    const int H = st->H, W = st->W, periodic = st->periodic;
    const size_t n = st->n;
    const REAL *p = st->p, h = st->h, idx2 = st->idx2, mobv = st->mobv, mobi = st->mobi;
    const REAL *cv = e->s, *ci = e->s + n, *eta = e->s + 2 * n, *mu = e->mu, *mui = e->mu + n;
    REAL *u = e->u;
    ROW_LOOP_IDEMPOTENT(y, {
        const REAL r = (p[P_RB] + p[P_RS] * eta[k] * eta[k]) * cv[k] * ci[k];
        u[k] = cv[k] + h * (cv[k] * mobv * LAP(mu) - r);
        u[n + k] = ci[k] + h * (ci[k] * mobi * LAP(mui) - r);
        u[2 * n + k] = eta[k] + h * (-p[P_L] * mu[2 * n + k]);
    })
    if (e->counts) project_span(u, e->f, st->fdiv, cnt, e->mask, n, (size_t)y * (size_t)W, (size_t)W);
}

/* One step of one batch element on one thread: each row's potentials are computed just before the update that first
 * reads them, so they are read back from cache (on a periodic grid row H - 1 first, for row 0). */
static void forward_element(const Step *st, const Element *e) {
    const int H = st->H;
    long long cnt[3] = {0, 0, 0};
#define POT_(y0, y1) potential_rows(st, e->s, e->mu, (y0), (y1))
#define ROW_(y) update_row(st, e, (y), cnt)
    PIPELINE_ROWS(H, st->periodic, POT_, ROW_)
#undef POT_
#undef ROW_
    if (e->counts)
        for (int c = 0; c < 3; ++c) e->counts[c] = cnt[c];
}

/* One step of one batch element on `threads` threads sharing its rows: all potentials, then all updates (integer
 * counts: their sum does not depend on the order). */
static void forward_element_rows(const Step *st, const Element *e, int threads) {
    (void)threads; /* without OpenMP the pragmas go and the rows run in turn */
    const int H = st->H;
    long long c0 = 0, c1 = 0, c2 = 0;
#pragma omp parallel num_threads(threads)
    {
#pragma omp for schedule(static)
        for (int y = 0; y < H; ++y) potential_rows(st, e->s, e->mu, y, y + 1);
#pragma omp for schedule(static) reduction(+ : c0, c1, c2)
        for (int y = 0; y < H; ++y) {
            long long cnt[3] = {0, 0, 0};
            update_row(st, e, y, cnt);
            c0 += cnt[0];
            c1 += cnt[1];
            c2 += cnt[2];
        }
    }
    if (e->counts) {
        e->counts[0] = c0;
        e->counts[1] = c1;
        e->counts[2] = c2;
    }
}

/* Batch element b of a forward call; its potentials go to the tape (pot) if there is one, else to work. */
static Element element(const Step *st, const REAL *state, REAL *out, int b, REAL *pot, REAL *work, const REAL *forcing,
                       long long *counts, unsigned char *mask) {
    const size_t n = st->n;
    Element e;
    e.s = state + (size_t)b * 3 * n;
    e.u = out + (size_t)b * 3 * n;
    e.mu = pot ? pot + (size_t)b * 3 * n : work;
    e.f = forcing ? forcing + (size_t)b * 3 * n : NULL;
    e.counts = counts ? counts + 3 * b : NULL;
    e.mask = counts ? mask + (size_t)b * n : NULL;
    return e;
}

/* out = u = s + h rate(s); with counts != NULL the projection follows (see project_span): out = clamp(u + f / fdiv),
 * counts [B, 3], mask [B, H, W]. With pot != NULL the potentials (mu_v, mu_i, mu_eta; [B, 3, H, W]) are written
 * there for the backward. threads: how many threads may share the work (batch elements, or rows of a single
 * element); the result does not depend on it. Returns 1 if a work buffer could not be allocated. */
int FN(reference_forward)(const REAL *state, REAL *out, int B, int H, int W, int periodic, const double *pd, double h,
                          double dx, const REAL *forcing, double fdiv, long long *counts, unsigned char *mask,
                          REAL *pot, int threads) {
    Step st;
    step_init(&st, H, W, periodic, pd, h, dx, fdiv);
    const size_t n = st.n;
    const int plan = thread_plan(threads, B, H, W);
    const int slots = plan == 1 ? (threads < B ? threads : B) : 1;
    /* without a tape: the potentials of each thread's element */
    REAL *work = pot ? NULL : (REAL *)malloc(sizeof(REAL) * 3 * n * (size_t)slots);
    if (!pot && !work) return 1;
    if (plan == 2) { /* rows split: the elements in turn */
        for (int b = 0; b < B; ++b) {
            Element e = element(&st, state, out, b, pot, work, forcing, counts, mask);
            forward_element_rows(&st, &e, threads);
        }
    } else {
#pragma omp parallel for num_threads(slots) schedule(static) if (plan == 1)
        for (int b = 0; b < B; ++b) {
            REAL *mine = pot ? NULL : work + (size_t)thread_slot() * 3 * n;
            Element e = element(&st, state, out, b, pot, mine, forcing, counts, mask);
            forward_element(&st, &e);
        }
    }
    free(work);
    return 0;
}

/* ---- backward -------------------------------------------------------------------------------------------------- */

/* The parameter sums of the backward, in double: each row's per-pixel terms summed in REAL by the vectorised loops,
 * the rows in double. S_DV, S_DI: the D_v, D_i terms before the factor 1 / kBT (kBT's gradient takes them too). */
enum { S_EV, S_EI, S_T, S_KV, S_KI, S_KE, S_DV, S_DI, S_L, S_COUNT };

/* What the backward of one batch element reads and writes. */
typedef struct {
    const REAL *s, *ub;      /* state and the adjoint of the output [3, H, W] */
    REAL *sb, *fb;           /* the state's adjoint [3, H, W]; the forcing's (added to), or NULL */
    const unsigned char *mk; /* the clamp's mask [H, W] or NULL (no projection) */
    const REAL *mu;          /* potentials [3, H, W] (the forward's, or recomputed into the work buffer) */
    const REAL *xb;          /* the adjoint of u: ub where the clamp passed it [3, H, W] (ub itself without a mask) */
    REAL *xb_buf, *q, *mb;   /* work: the masked adjoint (3), q = h xb M (2: c_v, c_i), mubar (3) */
} Adjoint;

/* Sets up the backward of one element in buf (11 fields). */
static void adjoint_init(Adjoint *a, const Step *st, const REAL *s, const REAL *ub, REAL *sb, REAL *fb,
                         const unsigned char *mk, const REAL *pot, REAL *buf) {
    const size_t n = st->n;
    a->s = s;
    a->ub = ub;
    a->sb = sb;
    a->fb = fb;
    a->mk = mk;
    a->mu = pot ? pot : buf;
    a->xb_buf = buf + 3 * n;
    a->xb = mk ? a->xb_buf : ub;
    a->q = buf + 6 * n;
    a->mb = buf + 8 * n;
}

/* Pass 1 of rows y0 <= y < y1 (pointwise): the potentials if they are not the forward's (recompute), the clamp's
 * adjoint xb = ub [inside], the forcing's adjoint f_bar += xb / fdiv and the adjoint of the transport's Laplacian,
 * q = h xb M (rate = M lap(mu) - R: lap(mu) receives M times the rate's adjoint h xb). */
static void adjoint_rows(const Step *st, const Adjoint *a, int recompute, int y0, int y1) {
    const size_t n = st->n, k0 = (size_t)y0 * (size_t)st->W, k1 = (size_t)y1 * (size_t)st->W;
    const REAL h = st->h, mobv = st->mobv, mobi = st->mobi, fdiv = st->fdiv;
    const REAL *cv = a->s, *ci = a->s + n, *ub = a->ub;
    REAL *q = a->q;
    if (recompute) potential_rows(st, a->s, (REAL *)a->mu, y0, y1);
    if (a->mk) {
        const unsigned char *mk = a->mk;
        REAL *xb = a->xb_buf;
        _Pragma("omp simd") for (size_t k = k0; k < k1; ++k) {
            xb[k] = (mk[k] & 1u) ? ub[k] : (REAL)0;
            xb[n + k] = (mk[k] & 2u) ? ub[n + k] : (REAL)0;
            xb[2 * n + k] = (mk[k] & 4u) ? ub[2 * n + k] : (REAL)0;
        }
    }
    const REAL *xb = a->xb;
    if (a->fb) {
        REAL *fb = a->fb;
        for (size_t k = k0; k < k1; ++k)
            for (int c = 0; c < 3; ++c) {
                const REAL g = xb[(size_t)c * n + k];
                fb[(size_t)c * n + k] += fdiv == (REAL)1 ? g : g / fdiv;
            }
    }
    _Pragma("omp simd") for (size_t k = k0; k < k1; ++k) {
        q[k] = h * xb[k] * (cv[k] * mobv);
        q[n + k] = h * xb[n + k] * (ci[k] * mobi);
    }
}

/* The local names the pixel statements of passes 2 and 3 use. */
#define ADJOINT_NAMES                                                                                           \
    const int H = st->H, W = st->W, periodic = st->periodic;                                                    \
    const size_t n = st->n;                                                                                     \
    const REAL *p = st->p, h = st->h, idx2 = st->idx2, mobv = st->mobv, mobi = st->mobi;                        \
    const REAL *cv = a->s, *ci = a->s + n, *eta = a->s + 2 * n, *mu = a->mu, *xb = a->xb, *q = a->q;            \
    REAL *mb = a->mb, *sb = a->sb;                                                                              \
    (void)H;                                                                                                    \
    (void)h;                                                                                                    \
    (void)mobv;                                                                                                 \
    (void)mobi;                                                                                                 \
    (void)q;                                                                                                    \
    (void)mu;                                                                                                   \
    (void)xb;

/* Pass 2 of row yy: the adjoint of the rates. Writes mubar (lap(q) for c_v and c_i, -L h xb for eta) and the parts of
 * s_bar that do not go through the potentials (the identity, the mobilities, the recombination); adds to the sums. */
static inline __attribute__((always_inline)) void pass2_row(const Step *st, const Adjoint *a, int yy, double *sum) {
    ADJOINT_NAMES
    const REAL *muv = mu, *mui = mu + n, *qv = q, *qi = q + n;
    REAL rDv = 0, rDi = 0, rL = 0;
    ROW_LOOP_ACCUM(yy, _Pragma("omp simd reduction(+ : rDv, rDi, rL)"), {
        const REAL bv = h * xb[k], bi = h * xb[n + k], be = h * xb[2 * n + k]; /* the rates' adjoints */
        /* M = D c / kBT multiplies lap(mu): its adjoint is the rate's adjoint times lap(mu) */
        const REAL mbv = bv * LAP(muv), mbi = bi * LAP(mui);
        /* R = kr c_v c_i enters both rates with a minus sign */
        const REAL kr = p[P_RB] + p[P_RS] * eta[k] * eta[k];
        const REAL rbar = -(bv + bi);
        mb[k] = LAP(qv);
        mb[n + k] = LAP(qi);
        mb[2 * n + k] = -p[P_L] * be;
        sb[k] = xb[k] + mbv * mobv + rbar * kr * ci[k];
        sb[n + k] = xb[n + k] + mbi * mobi + rbar * kr * cv[k];
        sb[2 * n + k] = xb[2 * n + k] + rbar * (REAL)2 * p[P_RS] * eta[k] * cv[k] * ci[k];
        rDv += w_ * (mbv * cv[k]);
        rDi += w_ * (mbi * ci[k]);
        rL += w_ * (-be * mu[2 * n + k]);
    })
    sum[S_DV] += rDv;
    sum[S_DI] += rDi;
    sum[S_L] += rL;
}

/* Pass 3 of row y: the adjoint of the chemical potentials (local part and -kappa lap), added to s_bar; reads mubar of
 * rows y - 1, y, y + 1. */
static inline __attribute__((always_inline)) void pass3_row(const Step *st, const Adjoint *a, int y, double *sum) {
    ADJOINT_NAMES
    const REAL *mbv_ = mb, *mbi_ = mb + n, *mbe_ = mb + 2 * n, *etp = eta;
    REAL rKv = 0, rKi = 0, rKe = 0, rE = 0, rEi = 0, rT = 0;
    ROW_LOOP_ACCUM(y, _Pragma("omp simd reduction(+ : rKv, rKi, rKe, rE, rEi, rT)"), {
        const REAL c_v = cv[k], c_i = ci[k], e = eta[k];
        Local l;
        local_terms(c_v, c_i, p, &l);
        const REAL fv = (c_v - (REAL)1) * (c_v - (REAL)1) + c_i * c_i;
        const REAL bv = mb[k], bi = mb[n + k], be = mb[2 * n + k];
        const REAL hh = (e - (REAL)1) * (e - (REAL)1), j = e * e, e2 = (REAL)2 * (e - (REAL)1);
        /* dA_v/dc_v = keep kBT (g_v + g_s), dA_v/dc_i = dA_i/dc_v = keep kBT g_s, dA_i/dc_i = keep kBT (g_i + g_s) */
        const REAL ts = l.keep * p[P_T] * l.gs;
        const REAL avv = l.keep * p[P_T] * l.gv + ts, aii = l.keep * p[P_T] * l.gi + ts;
        const REAL gcv = bv * (hh * avv + (REAL)2 * j) + bi * hh * ts +
                         be * (e2 * l.dfv + (REAL)4 * e * (c_v - (REAL)1)) - p[P_KV] * LAP(mbv_);
        const REAL gci = bv * hh * ts + bi * (hh * aii + (REAL)2 * j) + be * (e2 * l.dfi + (REAL)4 * e * c_i) -
                         p[P_KI] * LAP(mbi_);
        const REAL geta = bv * (e2 * l.av + (REAL)4 * e * (c_v - (REAL)1)) + bi * (e2 * l.ai + (REAL)4 * e * c_i) +
                          be * (REAL)2 * (l.fs + fv) - p[P_KE] * LAP(mbe_);
        sb[k] += w_ * gcv;
        sb[n + k] += w_ * gci;
        sb[2 * n + k] += w_ * geta;
        /* parameters: kappa (mubar times -lap), E and kBT through A and f_s */
        rKv += w_ * (-bv * LAP(cv));
        rKi += w_ * (-bi * LAP(ci));
        rKe += w_ * (-be * LAP(etp));
        rE += w_ * (l.keep * (bv * hh + be * e2 * c_v));
        rEi += w_ * (l.keep * (bi * hh + be * e2 * c_i));
        rT += w_ * (bv * hh * l.lvs + bi * hh * l.lis + be * e2 * l.ent);
    })
    sum[S_KV] += rKv;
    sum[S_KI] += rKi;
    sum[S_KE] += rKe;
    sum[S_EV] += rE;
    sum[S_EI] += rEi;
    sum[S_T] += rT;
}

DEFINE_BACKWARD_DRIVERS

/* s_bar [B, 3, H, W] (written) and pbar[9] (added to) from ubar, the adjoint of the forward's output; fbar (or NULL)
 * is added to. mask: the forward's clamp mask [B, H, W], or NULL for a step without projection. pot: the forward's
 * potentials [B, 3, H, W], or NULL to recompute them. threads: as in the forward; the gradients do not depend on
 * it. Returns 1 if a work buffer could not be allocated. */
int FN(reference_backward)(const REAL *state, const REAL *ubar, REAL *sbar, REAL *fbar, double *pbar, int B, int H,
                           int W, int periodic, const double *pd, double h, double dx, double fdiv,
                           const unsigned char *mask, const REAL *pot, int threads) {
    Step st;
    step_init(&st, H, W, periodic, pd, h, dx, fdiv);
    const size_t n = st.n;
    const int plan = thread_plan(threads, B, H, W);
    const int slots = plan == 1 ? (threads < B ? threads : B) : 1;
    /* per thread: mu (3), the masked adjoint (3), q (2), mubar (3); the sums of each row */
    REAL *buf = (REAL *)malloc(sizeof(REAL) * 11 * n * (size_t)slots);
    double *sums = (double *)malloc(sizeof(double) * (size_t)B * (size_t)H * S_COUNT);
    if (!buf || !sums) {
        free(buf);
        free(sums);
        return 1;
    }
#define ADJOINT_OF(b, slot)                                                                                     \
    Adjoint a;                                                                                                  \
    adjoint_init(&a, &st, state + (size_t)(b) * 3 * n, ubar + (size_t)(b) * 3 * n, sbar + (size_t)(b) * 3 * n,  \
                 fbar ? fbar + (size_t)(b) * 3 * n : NULL, mask ? mask + (size_t)(b) * n : NULL,                \
                 pot ? pot + (size_t)(b) * 3 * n : NULL, buf + (size_t)(slot) * 11 * n);                        \
    double *rows = sums + (size_t)(b) * (size_t)H * S_COUNT;
    BACKWARD_BATCH(g)
#undef ADJOINT_OF
    /* D_v and D_i enter through the mobilities D / kBT */
    const double T = (double)st.p[P_T];
    pbar[0] += g[S_EV];
    pbar[1] += g[S_EI];
    pbar[2] += g[S_T] - (g[S_DV] * (double)st.mobv + g[S_DI] * (double)st.mobi) / T;
    pbar[3] += g[S_KV];
    pbar[4] += g[S_KI];
    pbar[5] += g[S_KE];
    pbar[6] += g[S_DV] / T;
    pbar[7] += g[S_DI] / T;
    pbar[8] += g[S_L];
    free(buf);
    free(sums);
    return 0;
}

/* ---- stability estimate ---------------------------------------------------------------------------------------- */

/* The explicit stability estimate of the state (VoidModel.stability_rate for the reference discretisation, term by
 * term): out[0], out[1] = max over pixels of the c_v and c_i stiffness D hh + 2 j M + M kappa k (without the factor
 * k = 8 / dx^2, the Laplacian bound; M = D c / kBT as it is), out[2] = max of |d2f/deta2| = |2 (f_s + f_v)|. NaN in
 * any term makes the estimate NaN, as the plain path's amax does. */
int FN(reference_stability)(const REAL *state, int B, int H, int W, const double *pd, double dx, double *out) {
    REAL p[P_COUNT];
    for (int i = 0; i < P_COUNT; ++i) p[i] = (REAL)pd[i];
    const REAL k8 = (REAL)(8.0 / (dx * dx));
    const size_t n = (size_t)H * (size_t)W;
    const REAL mobv = p[P_DV] / p[P_T], mobi = p[P_DI] / p[P_T];
    REAL best_v = -INFINITY, best_i = -INFINITY, best_e = -INFINITY;
    int nans = 0;
    for (int b = 0; b < B; ++b) {
        const REAL *cv = state + (size_t)b * 3 * n, *ci = cv + n, *eta = cv + 2 * n;
        for (int y = 0; y < H; ++y) {
            const size_t r = (size_t)y * (size_t)W;
            REAL rv = -INFINITY, ri = -INFINITY, re = -INFINITY, rnan = 0;
            _Pragma("omp simd reduction(max : rv, ri, re) reduction(+ : rnan)") for (size_t x = 0; x < (size_t)W;
                                                                                    ++x) {
                const size_t k = r + x;
                const REAL c_v = cv[k], c_i = ci[k], e = eta[k];
                const REAL hh = (e - (REAL)1) * (e - (REAL)1), j = e * e;
                const REAL mv = c_v * mobv, mi = c_i * mobi;
                const REAL tv = p[P_DV] * hh + (REAL)2 * j * mv + mv * p[P_KV] * k8;
                const REAL ti = p[P_DI] * hh + (REAL)2 * j * mi + mi * p[P_KI] * k8;
                Local l;
                local_terms(c_v, c_i, p, &l);
                const REAL curv = (REAL)2 * (l.fs + (c_v - (REAL)1) * (c_v - (REAL)1) + c_i * c_i);
                const REAL te = curv < 0 ? -curv : curv;
                rv = tv > rv ? tv : rv;
                ri = ti > ri ? ti : ri;
                re = te > re ? te : re;
                rnan += tv + ti + te; /* NaN propagates through the sum (the maxima skip it) */
            }
            nans |= rnan != rnan;
            best_v = rv > best_v ? rv : best_v;
            best_i = ri > best_i ? ri : best_i;
            best_e = re > best_e ? re : best_e;
        }
    }
    out[0] = nans ? NAN : (double)best_v;
    out[1] = nans ? NAN : (double)best_i;
    out[2] = nans ? NAN : (double)best_e;
    return 0;
}

/* ---- stochastic increment ----------------------------------------------------------------------------------------- */

/* The reference model's stochastic increment over dt, dt (P w + noise xi) per field, in one pass (ReferenceVoidModel.
 * forcing_increment term by term): the cascade source P = V_g U where eta < eta_max and the gate <= p_casc (else 0),
 * shared among c_v, c_i and eta by the weights w = (bias, 1 - bias, 2 bias - 1); xi has three standard-normal fields.
 * ex: p_casc, V_g, bias, noise, eta_max, dt. No adjoint: the increment depends on the state only through the gate. */
int FN(reference_forcing)(const REAL *state, const REAL *gate, const REAL *ampl, const REAL *xi, REAL *out, int B,
                          int H, int W, const double *ex) {
    const size_t n = (size_t)H * (size_t)W;
    const REAL pc = (REAL)ex[0], vg = (REAL)ex[1], noise = (REAL)ex[3], emax = (REAL)ex[4], dt = (REAL)ex[5];
    const REAL w0 = (REAL)ex[2], w1 = (REAL)(1.0 - ex[2]), w2 = (REAL)(2.0 * ex[2] - 1.0);
    for (int b = 0; b < B; ++b) {
        const REAL *eta = state + (size_t)b * 3 * n + 2 * n, *g = gate + (size_t)b * n, *a = ampl + (size_t)b * n;
        const REAL *x = xi + (size_t)b * 3 * n;
        REAL *o = out + (size_t)b * 3 * n;
        _Pragma("omp simd") for (size_t k = 0; k < n; ++k) {
            const REAL hit = (eta[k] < emax && g[k] <= pc) ? (REAL)1 : (REAL)0;
            const REAL casc = vg * a[k] * hit;
            o[k] = dt * (w0 * casc + noise * x[k]);
            o[n + k] = dt * (w1 * casc + noise * x[n + k]);
            o[2 * n + k] = dt * (w2 * casc + noise * x[2 * n + k]);
        }
    }
    return 0;
}

/* The same increment with its numbers made from their Philox key (philox.h) instead of read from fields: the gate,
 * the amplitude and xi are fields `field`, `field` + 1 and `field` + 2 under (k0, k1), as PhiloxNumbers draws them in
 * ReferenceVoidModel.draw's order, so the increment is the one reference_forcing makes from those fields (the same
 * bits). Two passes, no field of numbers kept: the cascade source of every pixel (the gate's and the amplitude's
 * words of a chunk of blocks, then the pixels they fall on), then xi's normal numbers, each written into its element
 * of the increment. Threads share the chunks of blocks; every element is a function of the key and its index, so
 * every thread count gives the same bits. */
int FN(reference_forcing_philox)(const REAL *state, REAL *out, int B, int H, int W, const double *ex, uint32_t k0,
                                  uint32_t k1, uint32_t field, int threads) {
    const int64_t hw = (int64_t)H * (int64_t)W, n = (int64_t)B * hw, n3 = 3 * n, q = (n + 3) / 4, q3 = (n3 + 3) / 4;
    const REAL pc = (REAL)ex[0], vg = (REAL)ex[1], noise = (REAL)ex[3], emax = (REAL)ex[4], dt = (REAL)ex[5];
    const REAL wc[3] = {(REAL)ex[2], (REAL)(1.0 - ex[2]), (REAL)(2.0 * ex[2] - 1.0)};
    REAL *casc = (REAL *)malloc((size_t)n * sizeof(REAL));
    if (casc == NULL) return 1;
    (void)threads;
    /* the cascade source V_g U of pixel e (batch element e / hw) where eta < eta_max and the gate <= p_casc, else 0 */
    _Pragma("omp parallel for num_threads(threads) schedule(static) if (parallel: q >= 2 * MIN_BLOCKS_PER_THREAD)")
    for (int64_t m = 0; m < q; m += CHUNK) {
        uint32_t g[4][CHUNK] __attribute__((aligned(64))), a[4][CHUNK] __attribute__((aligned(64)));
        const int len = (int)(q - m < CHUNK ? q - m : CHUNK), lanes = (len + PHILOX_LANES - 1) / PHILOX_LANES;
        chunk_words(k0, k1, field, m, lanes * PHILOX_LANES, g);
        chunk_words(k0, k1, field + 1u, m, lanes * PHILOX_LANES, a);
        for (int j = 0; j < 4; ++j) {
            const int64_t e0 = j * q + m, stop = e0 + len < n ? e0 + len : n;
            for (int64_t e = e0; e < stop;) { /* runs within one batch element */
                const int64_t b = e / hw, end = (b + 1) * hw < stop ? (b + 1) * hw : stop;
                const REAL *eta = state + (2 * b + 2) * hw; /* eta of pixel e: eta[e] */
                const uint32_t *gj = g[j], *aj = a[j];
                _Pragma("omp simd") for (int64_t k = e; k < end; ++k) {
                    const REAL hit = (eta[k] < emax && uniform_of(gj[k - e0]) <= pc) ? (REAL)1 : (REAL)0;
                    casc[k] = vg * uniform_of(aj[k - e0]) * hit;
                }
                e = end;
            }
        }
    }
    /* xi's normal numbers, element e of the increment's [B, 3, H, W] (channel plane g = e / hw: element g / 3, field
     * g % 3): dt (w_c cascade + noise xi) */
    _Pragma("omp parallel for num_threads(threads) schedule(static) if (parallel: q3 >= 2 * MIN_BLOCKS_PER_THREAD)")
    for (int64_t m = 0; m < q3; m += CHUNK) {
        uint32_t w[4][CHUNK] __attribute__((aligned(64)));
        REAL z[4][CHUNK] __attribute__((aligned(64)));
        const int len = (int)(q3 - m < CHUNK ? q3 - m : CHUNK);
        chunk_words(k0, k1, field + 2u, m, (len + PHILOX_LANES - 1) / PHILOX_LANES * PHILOX_LANES, w);
        _Pragma("omp simd") for (int t = 0; t < len; ++t) NORMALS(w, t, z[0][t], z[1][t], z[2][t], z[3][t])
        for (int j = 0; j < 4; ++j) {
            const int64_t e0 = j * q3 + m, stop = e0 + len < n3 ? e0 + len : n3;
            for (int64_t e = e0; e < stop;) { /* runs within one channel plane */
                const int64_t g = e / hw, end = (g + 1) * hw < stop ? (g + 1) * hw : stop;
                const REAL wg = wc[g % 3];
                const REAL *cg = casc + (g / 3) * hw, *zj = z[j];
                const int64_t plane = g * hw;
                _Pragma("omp simd") for (int64_t k = e; k < end; ++k) out[k] = dt * (wg * cg[k - plane] + noise * zj[k - e0]);
                e = end;
            }
        }
    }
    free(casc);
    return 0;
}
