/* Fused explicit / IMEX Euler increment of the conservative void model and its adjoint (upwind face
 * mobilities). Compiled twice, with REAL = float and REAL = double (see fused.py).
 *
 * Forward: u = s + h * rate(s) / (1 + h * d(s))   (d = 0 for the explicit step), state [B, 3, H, W], on a
 * periodic grid or between no-flux walls.
 * Backward: given ub = dL/du, s_bar = dL/ds and the gradients of the nine learned parameters
 * (E_v, E_i, kBT, kappa_v, kappa_i, kappa_eta, D_v, D_i, L), accumulated in double.
 * With FAST_LOG (float32 builds) the logarithm is a branch-free polynomial instead of libm's.
 * The formulas mirror ConservativeVoidModel in void_model.py term by term (the plain PyTorch path is the
 * reference; the tests compare the two).
 * Threads (OpenMP, where the compiler has it): a call shares its batch elements between the threads it is given, or
 * with fewer elements than threads the rows of each element (bands in the forward; the backward's passes row by row).
 * Every thread count gives the same bits: the updates are per pixel and the parameter sums are kept per row and added
 * in row order.
 */
#include "common.h"

/* parameter vector: the P_COUNT values passed in, then the reciprocals of the two floors (P_ALL in all) */
enum { P_EV, P_EI, P_T, P_KV, P_KI, P_KE, P_DV, P_DI, P_L, P_RB, P_RS, P_EPS, P_SAT, P_COUNT };
enum { P_IEPS = P_COUNT, P_ISAT, P_ALL };

static void load_params(REAL *p, const double *pd) {
    for (int i = 0; i < P_COUNT; ++i) p[i] = (REAL)pd[i];
    p[P_IEPS] = (REAL)(1.0 / pd[P_EPS]);
    p[P_ISAT] = (REAL)(1.0 / pd[P_SAT]);
}

#ifdef FAST_LOG
/* The kernel's logarithm of n floats, for the tests. */
void fast_log_array(const float *x, float *out, long long n) {
    for (long long k = 0; k < n; ++k) out[k] = fast_log(x[k]);
}
#endif

/* x ln x continued below delta by its quadratic Taylor expansion: g, g' - 1 and g'' (= 1 / max(x, delta)).
 * inv = 1 / delta: multiplications instead of two divisions per call (d = 0 above delta, so only the continued part,
 * rarely reached, can differ from the plain path's d / delta, by an ulp). */
static inline __attribute__((always_inline)) void entropy(REAL x, REAL delta, REAL inv, REAL *g, REAL *dg,
                                                          REAL *ddg) {
    REAL xc = x > delta ? x : delta;
    REAL lg = LOG(xc);
    REAL d = x - xc;
    *g = xc * lg + (lg + (REAL)1) * d + d * d * ((REAL)0.5 * inv);
    *dg = lg + d * inv;
    *ddg = (REAL)1 / xc;
}

typedef struct {
    REAL fs, av, ai, ent; /* f_s, dfs/dc_v, dfs/dc_i, gv + gi + gs */
    REAL ivs, iis, is;    /* 1/xc_v + ..., derivatives: 1/xc_v, 1/xc_i, 1/xc_s */
    REAL dvs, dis;        /* dv - ds, di - ds */
} Local;

static inline __attribute__((always_inline)) void local_terms(REAL cv, REAL ci, const REAL *p, Local *o) {
    REAL gv, dv, hv, gi, di, hi, gs, ds, hs;
    entropy(cv, p[P_EPS], p[P_IEPS], &gv, &dv, &hv);
    entropy(ci, p[P_EPS], p[P_IEPS], &gi, &di, &hi);
    entropy((REAL)1 - cv - ci, p[P_SAT], p[P_ISAT], &gs, &ds, &hs);
    o->ent = gv + gi + gs;
    o->fs = p[P_EV] * cv + p[P_EI] * ci + p[P_T] * o->ent;
    o->dvs = dv - ds;
    o->dis = di - ds;
    o->av = p[P_EV] + p[P_T] * o->dvs;
    o->ai = p[P_EI] + p[P_T] * o->dis;
    o->ivs = hv;
    o->iis = hi;
    o->is = hs;
}

/* The chemical potentials of pixel k (the statements of potential_rows' loops); d_eta too where store_de. */
#define POTENTIAL_PIXEL(store_de)                                                                               \
    {                                                                                                           \
        const REAL cv = cvp[k], ci = cip[k], eta = etp[k];                                                      \
        Local l;                                                                                                \
        local_terms(cv, ci, p, &l);                                                                             \
        const REAL lv = (cvp[ke] + cvp[kw] + cvp[ks] + cvp[kn] - (REAL)4 * cv) * idx2;                          \
        const REAL li = (cip[ke] + cip[kw] + cip[ks] + cip[kn] - (REAL)4 * ci) * idx2;                          \
        const REAL le = (etp[ke] + etp[kw] + etp[ks] + etp[kn] - (REAL)4 * eta) * idx2;                         \
        const REAL hh = (eta - (REAL)1) * (eta - (REAL)1), j = eta * eta;                                       \
        const REAL fv = (cv - (REAL)1) * (cv - (REAL)1) + ci * ci;                                              \
        mu[k] = hh * l.av + (REAL)2 * j * (cv - (REAL)1) - p[P_KV] * lv;                                        \
        mu[n + k] = hh * l.ai + (REAL)2 * j * ci - p[P_KI] * li;                                                \
        mu[2 * n + k] = (REAL)2 * (eta - (REAL)1) * l.fs + (REAL)2 * eta * fv - p[P_KE] * le;                   \
        if (store_de) {                                                                                         \
            const REAL x2 = (REAL)2 * (l.fs + fv);                                                              \
            de[k] = p[P_L] * (x2 > 0 ? x2 : (REAL)0);                                                           \
        }                                                                                                       \
    }

/* The chemical potentials mu (3 fields) and eta's implicit diagonal de (unless de is NULL) of rows y0 <= y < y1. */
static void potential_rows(const REAL *s, REAL *mu, REAL *de, int H, int W, int periodic, const REAL *p, REAL idx2,
                           int y0, int y1) {
    const size_t n = (size_t)H * (size_t)W;
    const REAL *cvp = s, *cip = s + n, *etp = s + 2 * n;
    if (de)
        for (int y = y0; y < y1; ++y) ROW_LOOP_IDEMPOTENT(y, POTENTIAL_PIXEL(1))
    else
        for (int y = y0; y < y1; ++y) ROW_LOOP_IDEMPOTENT(y, POTENTIAL_PIXEL(0))
}

/* Upwind flux divergence of species c at k (without 1/dx^2). */
static inline __attribute__((always_inline)) REAL transport(const REAL *c, const REAL *mu, size_t k, size_t ke, size_t kw, size_t ks, size_t kn,
                             REAL mob) {
#define MOB(q) (mob * (c[q] > 0 ? c[q] : (REAL)0))
    const REAL m = MOB(k);
    const REAL fe = (mu[ke] > mu[k] ? MOB(ke) : m) * (mu[ke] - mu[k]);
    const REAL fw = (mu[k] > mu[kw] ? m : MOB(kw)) * (mu[k] - mu[kw]);
    const REAL fs = (mu[ks] > mu[k] ? MOB(ks) : m) * (mu[ks] - mu[k]);
    const REAL fn = (mu[k] > mu[kn] ? m : MOB(kn)) * (mu[k] - mu[kn]);
#undef MOB
    return fe - fw + fs - fn;
}

/* The conservative projection of the pixels [r, r + w) of one batch element in place: add the forcing increment
 * f / fdiv (if any), count the values outside [0, 1] per field (added to counts), clamp eta to [0, 1] and record
 * where it was inside (the clamp's gradient mask). The forward runs it on each row right after the row's update,
 * while the row is in cache. */
static inline __attribute__((always_inline)) void project_span(REAL *u, const REAL *f, REAL fdiv, long long *counts,
                                                               unsigned char *mask, size_t n, size_t r, size_t w) {
    REAL *v = u + r, *c = u + n + r, *e = u + 2 * n + r;
    unsigned char *m = mask + r;
    int ov = 0, oc = 0, oe = 0; /* one loop over the three fields, int counts: the pass costs a tenth of the step */
#define PROJECT_PIXEL(a, b, x)                                                                                  \
    {                                                                                                           \
        ov += (a < 0) | (a > 1);                                                                                \
        oc += (b < 0) | (b > 1);                                                                                \
        oe += (x < 0) | (x > 1);                                                                                \
        m[k] = (unsigned char)((x >= 0) & (x <= 1));                                                            \
        e[k] = x < 0 ? (REAL)0 : (x > 1 ? (REAL)1 : x);                                                         \
    }
    if (f) {
        const REAL *gv = f + r, *gc = f + n + r, *ge = f + 2 * n + r;
        _Pragma("omp simd reduction(+ : ov, oc, oe)") for (size_t k = 0; k < w; ++k) {
            const REAL a = v[k] + (fdiv == (REAL)1 ? gv[k] : gv[k] / fdiv);
            const REAL b = c[k] + (fdiv == (REAL)1 ? gc[k] : gc[k] / fdiv);
            const REAL x = e[k] + (fdiv == (REAL)1 ? ge[k] : ge[k] / fdiv);
            v[k] = a;
            c[k] = b;
            PROJECT_PIXEL(a, b, x)
        }
    } else {
        _Pragma("omp simd reduction(+ : ov, oc, oe)") for (size_t k = 0; k < w; ++k) {
            const REAL a = v[k], b = c[k], x = e[k];
            PROJECT_PIXEL(a, b, x)
        }
    }
#undef PROJECT_PIXEL
    counts[0] += ov;
    counts[1] += oc;
    counts[2] += oe;
}

/* What one step of one batch element reads and writes (the kernels' per-element arguments). */
typedef struct {
    const REAL *s; /* state [3, H, W] */
    REAL *u;       /* updated state [3, H, W] */
    REAL *mu, *de; /* potentials [3, H, W] and eta's implicit diagonal [H, W] (de may be NULL: explicit, no tape) */
    const REAL *f; /* forcing increment [3, H, W] or NULL */
    long long *counts;   /* [3] or NULL (no projection) */
    unsigned char *mask; /* [H, W] with counts */
} Element;

typedef struct {
    int H, W, periodic, imex;
    REAL p[P_ALL];
    REAL h, idx2, mobv, mobi, fdiv;
    size_t n;
} Step;

static void step_init(Step *st, int H, int W, int periodic, const double *pd, double h, double dx, int imex,
                      double fdiv) {
    load_params(st->p, pd);
    st->H = H;
    st->W = W;
    st->periodic = periodic;
    st->imex = imex;
    st->h = (REAL)h;
    st->idx2 = (REAL)(1.0 / (dx * dx));
    st->mobv = st->p[P_DV] / st->p[P_T];
    st->mobi = st->p[P_DI] / st->p[P_T];
    st->fdiv = (REAL)fdiv;
    st->n = (size_t)H * (size_t)W;
}

/* The update of row y from the potentials of rows y - 1, y and y + 1, then the row's projection (with counts); the
 * counts of the row are added to cnt. */
static inline __attribute__((always_inline)) void update_row(const Step *st, const Element *e, int y, long long *cnt) {
    const int H = st->H, W = st->W, periodic = st->periodic;
    const size_t n = st->n;
    const REAL *p = st->p, h = st->h, idx2 = st->idx2, mobv = st->mobv, mobi = st->mobi;
    const REAL *cv = e->s, *ci = e->s + n, *eta = e->s + 2 * n, *mu = e->mu, *de = e->de;
    REAL *u = e->u;
    if (st->imex) {
        ROW_LOOP_IDEMPOTENT(y, {
            const REAL tv = transport(cv, mu, k, ke, kw, ks, kn, mobv) * idx2;
            const REAL ti = transport(ci, mu + n, k, ke, kw, ks, kn, mobi) * idx2;
            const REAL kr = p[P_RB] + p[P_RS] * eta[k] * eta[k];
            const REAL r = kr * cv[k] * ci[k];
            const REAL dv = kr * (ci[k] > 0 ? ci[k] : (REAL)0), di = kr * (cv[k] > 0 ? cv[k] : (REAL)0);
            u[k] = cv[k] + h * (tv - r) / ((REAL)1 + h * dv);
            u[n + k] = ci[k] + h * (ti - r) / ((REAL)1 + h * di);
            u[2 * n + k] = eta[k] + h * (-p[P_L] * mu[2 * n + k]) / ((REAL)1 + h * de[k]);
        })
    } else {
        ROW_LOOP_IDEMPOTENT(y, {
            const REAL tv = transport(cv, mu, k, ke, kw, ks, kn, mobv) * idx2;
            const REAL ti = transport(ci, mu + n, k, ke, kw, ks, kn, mobi) * idx2;
            const REAL r = (p[P_RB] + p[P_RS] * eta[k] * eta[k]) * cv[k] * ci[k];
            u[k] = cv[k] + h * (tv - r);
            u[n + k] = ci[k] + h * (ti - r);
            u[2 * n + k] = eta[k] + h * (-p[P_L] * mu[2 * n + k]);
        })
    }
    if (e->counts) project_span(u, e->f, st->fdiv, cnt, e->mask, n, (size_t)y * (size_t)W, (size_t)W);
}

/* One step of one batch element on one thread. Row y's update reads the potentials of rows y - 1, y and y + 1: each
 * row's potentials are computed just before the update that first needs them, so they are read back from cache (on
 * a periodic grid row H - 1 first, for row 0). */
static void forward_element(const Step *st, const Element *e) {
    const int H = st->H;
    long long cnt[3] = {0, 0, 0};
#define POT_(y0, y1) potential_rows(e->s, e->mu, e->de, H, st->W, st->periodic, st->p, st->idx2, (y0), (y1))
#define ROW_(y) update_row(st, e, (y), cnt)
    PIPELINE_ROWS(H, st->periodic, POT_, ROW_)
#undef POT_
#undef ROW_
    if (e->counts)
        for (int c = 0; c < 3; ++c) e->counts[c] = cnt[c];
}

/* The rows y0 <= y < y1 of one step of one batch element, with the potentials in scratch (4 fields, the element's
 * size): the band's own rows and the rows next to it that its updates read, computed in the same pipelined order as
 * forward_element. The band's potentials are then copied to e->mu if it is the tape (keep_tape). Bands of one element
 * can run at the same time: each writes only its own rows of u, mask and the tape. */
static void forward_band(const Step *st, const Element *e, REAL *scratch, int keep_tape, int y0, int y1,
                         long long *counts) {
    const int H = st->H, W = st->W;
    const size_t n = st->n;
    Element w = *e;
    w.mu = scratch;
    w.de = e->de ? scratch + 3 * n : NULL;
    const int north = y0 > 0 ? y0 - 1 : (st->periodic && H > 1 ? H - 1 : -1);
    const int south = y1 < H ? y1 : (st->periodic && H > 1 ? 0 : -1);
    long long cnt[3] = {0, 0, 0}; /* kept here: bands next to each other in counts would share a cache line */
#define OUTSIDE(r) ((r) >= 0 && ((r) < y0 || (r) >= y1))
#define POT_ROWS(r0, r1) potential_rows(w.s, w.mu, w.de, H, W, st->periodic, st->p, st->idx2, (r0), (r1))
    if (OUTSIDE(north)) POT_ROWS(north, north + 1);
    int done = y0;
    for (int y = y0; y < y1; ++y) {
        const int need = y + 2 < y1 ? y + 2 : y1;
        if (need > done) {
            POT_ROWS(done, need);
            done = need;
        }
        if (y == y1 - 1 && OUTSIDE(south)) POT_ROWS(south, south + 1);
        update_row(st, &w, y, cnt);
    }
#undef POT_ROWS
#undef OUTSIDE
    for (int c = 0; c < 3; ++c) counts[c] = cnt[c];
    if (keep_tape) {
        const size_t k0 = (size_t)y0 * (size_t)W, len = (size_t)(y1 - y0) * (size_t)W;
        for (int c = 0; c < (e->de ? 4 : 3); ++c) memcpy(e->mu + c * n + k0, scratch + c * n + k0, sizeof(REAL) * len);
    }
}

/* One step of one batch element on `threads` threads, each a band of rows with its own potentials in scratch
 * (threads x 4 fields); the counts are added in band order. */
static void forward_element_rows(const Step *st, const Element *e, REAL *scratch, int keep_tape, int threads) {
    (void)threads; /* without OpenMP the pragmas go and the bands run in turn */
    const int H = st->H;
    long long cnt[MAX_THREADS][3] = {{0}};
    const int bands = threads < MAX_THREADS ? threads : MAX_THREADS;
#pragma omp parallel for num_threads(bands) schedule(static, 1)
    for (int t = 0; t < bands; ++t)
        forward_band(st, e, scratch + (size_t)t * 4 * st->n, keep_tape, (int)((long long)H * t / bands),
                     (int)((long long)H * (t + 1) / bands), cnt[t]);
    if (e->counts)
        for (int c = 0; c < 3; ++c) {
            long long sum = 0;
            for (int t = 0; t < bands; ++t) sum += cnt[t][c];
            e->counts[c] = sum;
        }
}

/* Batch element b of a forward call; its potentials go to the tape (pot) if there is one, else to work. */
static Element element(const Step *st, const REAL *state, REAL *out, int b, REAL *pot, REAL *work, const REAL *forcing,
                       long long *counts, unsigned char *mask) {
    const size_t n = st->n;
    Element e;
    e.s = state + (size_t)b * 3 * n;
    e.u = out + (size_t)b * 3 * n;
    e.mu = pot ? pot + (size_t)b * 4 * n : work;
    e.de = (pot || st->imex) ? e.mu + 3 * n : NULL; /* the explicit update itself does not read d_eta */
    e.f = forcing ? forcing + (size_t)b * 3 * n : NULL;
    e.counts = counts ? counts + 3 * b : NULL;
    e.mask = counts ? mask + (size_t)b * n : NULL;
    return e;
}

/* With counts != NULL the conservative projection follows the update (see project_span): out = P(u + f / fdiv).
 * With pot != NULL the potentials (mu_v, mu_i, mu_eta, d_eta; [B, 4, H, W]) are written there for the backward.
 * threads: how many threads may share the work (batch elements, or rows of a single element); the result does not
 * depend on it. Returns 1 if a work buffer could not be allocated. */
int FN(void_forward)(const REAL *state, REAL *out, int B, int H, int W, int periodic, const double *pd, double h_,
                     double dx, int imex, const REAL *forcing, double fdiv, long long *counts, unsigned char *mask,
                     REAL *pot, int threads) {
    Step st;
    step_init(&st, H, W, periodic, pd, h_, dx, imex, fdiv);
    const size_t n = st.n;
    const int plan = thread_plan(threads, B, H, W);
    const int slots = plan == 1 ? (threads < B ? threads : B) : 1;
    /* the potentials of each thread's element (without a tape), or of each band of rows (with rows split) */
    const int bands = threads < MAX_THREADS ? threads : MAX_THREADS;
    const size_t fields = plan == 2 ? (size_t)bands : (pot ? 0 : (size_t)slots);
    REAL *work = fields ? (REAL *)malloc(sizeof(REAL) * 4 * n * fields) : NULL;
    if (fields && !work) return 1;
    if (plan == 2) { /* rows split: the elements in turn */
        for (int b = 0; b < B; ++b) {
            Element e = element(&st, state, out, b, pot, work, forcing, counts, mask);
            forward_element_rows(&st, &e, work, pot != NULL, bands);
        }
    } else {
#pragma omp parallel for num_threads(slots) schedule(static) if (plan == 1)
        for (int b = 0; b < B; ++b) {
            const int slot = thread_slot();
            REAL *mine = pot ? NULL : work + (size_t)slot * 4 * n;
            Element e = element(&st, state, out, b, pot, mine, forcing, counts, mask);
            forward_element(&st, &e);
        }
    }
    free(work);
    return 0;
}

/* count projected sub-steps without a tape, state -> out, in one call: the same void_forward calls as count calls in
 * turn, through tmp (a second state-sized buffer, unused when count is 1) so that the last one writes out. counts
 * ([B, 3], required) gets the sums of the sub-steps' counts, mask ([B, H, W]) the last sub-step's clamp mask. */
int FN(void_forward_substeps)(const REAL *state, REAL *out, REAL *tmp, int count, int B, int H, int W, int periodic,
                              const double *pd, double h_, double dx, int imex, const REAL *forcing, double fdiv,
                              long long *counts, unsigned char *mask, int threads) {
    long long *step = (long long *)malloc(sizeof(long long) * 3 * (size_t)B);
    if (!step) return 1;
    memset(counts, 0, sizeof(long long) * 3 * (size_t)B);
    const REAL *src = state;
    for (int i = 0; i < count; ++i) {
        REAL *dst = (count - 1 - i) % 2 == 0 ? out : tmp;
        const int rc =
            FN(void_forward)(src, dst, B, H, W, periodic, pd, h_, dx, imex, forcing, fdiv, step, mask, NULL, threads);
        if (rc != 0) {
            free(step);
            return rc;
        }
        for (size_t k = 0; k < 3 * (size_t)B; ++k) counts[k] += step[k];
        src = dst;
    }
    free(step);
    return 0;
}

/* Adjoint of the upwind flux divergence of one species at pixel k (used in pass 2 of the backward). */
#define SPECIES(c, m_, r_, mob, gc_out, gD)                                                                   \
    {                                                                                                          \
        const REAL fbe = (r_[k] - r_[ke]) * idx2, fbw = (r_[kw] - r_[k]) * idx2;                               \
        const REAL fbs = (r_[k] - r_[ks]) * idx2, fbn = (r_[kn] - r_[k]) * idx2;                               \
        const REAL cp = c[k] > 0 ? c[k] : (REAL)0;                                                             \
        const REAL m = mob * cp;                                                                               \
        const REAL me = mob * (c[ke] > 0 ? c[ke] : (REAL)0), mw = mob * (c[kw] > 0 ? c[kw] : (REAL)0);         \
        const REAL ms = mob * (c[ks] > 0 ? c[ks] : (REAL)0), mn = mob * (c[kn] > 0 ? c[kn] : (REAL)0);         \
        const REAL de_ = m_[ke] - m_[k], dw_ = m_[k] - m_[kw], ds_ = m_[ks] - m_[k], dn_ = m_[k] - m_[kn];     \
        const int ue = m_[ke] > m_[k], uw = m_[k] > m_[kw], us = m_[ks] > m_[k], un = m_[k] > m_[kn];          \
        const REAL mfe = ue ? me : m, mfw = uw ? m : mw, mfs = us ? ms : m, mfn = un ? m : mn;                  \
        mb_[k] = -fbe * mfe + fbw * mfw - fbs * mfs + fbn * mfn;                                               \
        /* mobility adjoint of this cell: the faces whose upwind cell it is */                                 \
        const REAL mbar = (ue ? (REAL)0 : fbe * de_) + (uw ? fbw * dw_ : (REAL)0) + (us ? (REAL)0 : fbs * ds_) + \
                          (un ? fbn * dn_ : (REAL)0);                                                          \
        gc_out += c[k] >= 0 ? mbar * mob : (REAL)0;                                                            \
        gD = mbar * cp;                                                                                       \
    }

/* Pass 3 of the backward at pixel k: the adjoint of the chemical potentials (local part and -kappa Laplacian),
 * with IMEX also the adjoint of the implicit diagonal (d_bar = -rbar h rate q, rbar = h q ubar already); both
 * need the same local terms. Adds to sb[k] and to the row sums rKv ... rL. */
#define BACKWARD_PIXEL(IMEX)                                                                                    \
    {                                                                                                           \
        const REAL c_v = cv[k], c_i = ci[k], e = eta[k];                                                        \
        Local l;                                                                                                \
        local_terms(c_v, c_i, p, &l);                                                                           \
        const REAL fv = (c_v - (REAL)1) * (c_v - (REAL)1) + c_i * c_i;                                          \
        REAL gcv = 0, gci = 0, geta = 0, pE = 0, pEi = 0, pT = 0, pL = 0;                                      \
        if (IMEX) {                                                                                             \
            const REAL tv = transport(cv, mu, k, ke, kw, ks, kn, mobv) * idx2;                                  \
            const REAL ti = transport(ci, mu + n, k, ke, kw, ks, kn, mobi) * idx2;                              \
            const REAL kr = p[P_RB] + p[P_RS] * e * e;                                                          \
            const REAL r = kr * c_v * c_i;                                                                      \
            const REAL civ = c_i > 0 ? c_i : (REAL)0, cvv = c_v > 0 ? c_v : (REAL)0;                            \
            const REAL qv = (REAL)1 / ((REAL)1 + h * kr * civ), qi = (REAL)1 / ((REAL)1 + h * kr * cvv);        \
            const REAL qe = (REAL)1 / ((REAL)1 + h * de[k]);                                                    \
            const REAL dbv = -rb[k] * h * (tv - r) * qv;                                                        \
            const REAL dbi = -rb[n + k] * h * (ti - r) * qi;                                                    \
            const REAL dbe = -rb[2 * n + k] * h * (-p[P_L] * mu[2 * n + k]) * qe;                               \
            /* d_v = kr max(ci, 0), d_i = kr max(cv, 0) */                                                      \
            gcv = c_v >= 0 ? dbi * kr : (REAL)0;                                                                \
            gci = c_i >= 0 ? dbv * kr : (REAL)0;                                                                \
            geta = (dbv * civ + dbi * cvv) * (REAL)2 * p[P_RS] * e;                                             \
            /* d_eta = L max(2 (f_s + f_v), 0) */                                                               \
            const REAL x2 = (REAL)2 * (l.fs + fv);                                                              \
            pL = dbe * (x2 > 0 ? x2 : (REAL)0);                                                                 \
            const REAL xb = x2 >= 0 ? (REAL)2 * dbe * p[P_L] : (REAL)0; /* adjoint of f_s and of f_v */        \
            gcv += xb * (l.av + (REAL)2 * (c_v - (REAL)1));                                                     \
            gci += xb * (l.ai + (REAL)2 * c_i);                                                                 \
            pE = xb * c_v;                                                                                      \
            pEi = xb * c_i;                                                                                     \
            pT = xb * l.ent;                                                                                    \
        }                                                                                                       \
        const REAL bv = mb[k], bi = mb[n + k], be = mb[2 * n + k];                                              \
        const REAL hh = (e - (REAL)1) * (e - (REAL)1), j = e * e;                                               \
        const REAL ts = p[P_T] * l.is;                                                                          \
        const REAL avv = p[P_T] * l.ivs + ts, avi = ts, aiv = ts, aii = p[P_T] * l.iis + ts;                    \
        gcv += bv * (hh * avv + (REAL)2 * j) + bi * hh * aiv +                                                  \
               be * ((REAL)2 * (e - (REAL)1) * l.av + (REAL)4 * e * (c_v - (REAL)1));                           \
        gci += bv * hh * avi + bi * (hh * aii + (REAL)2 * j) +                                                  \
               be * ((REAL)2 * (e - (REAL)1) * l.ai + (REAL)4 * e * c_i);                                       \
        geta += bv * ((REAL)2 * (e - (REAL)1) * l.av + (REAL)4 * e * (c_v - (REAL)1)) +                         \
                bi * ((REAL)2 * (e - (REAL)1) * l.ai + (REAL)4 * e * c_i) + be * (REAL)2 * (l.fs + fv);         \
        /* -kappa * Laplacian: self-adjoint on the periodic grid */                                             \
        const REAL lbv = (mb[ke] + mb[kw] + mb[ks] + mb[kn] - (REAL)4 * bv) * idx2;                             \
        const REAL lbi = (mb[n + ke] + mb[n + kw] + mb[n + ks] + mb[n + kn] - (REAL)4 * bi) * idx2;             \
        const REAL lbe = (mb[2 * n + ke] + mb[2 * n + kw] + mb[2 * n + ks] + mb[2 * n + kn] - (REAL)4 * be) * idx2; \
        gcv -= p[P_KV] * lbv;                                                                                   \
        gci -= p[P_KI] * lbi;                                                                                   \
        geta -= p[P_KE] * lbe;                                                                                  \
        sb[k] += w_ * gcv;                                                                                      \
        sb[n + k] += w_ * gci;                                                                                  \
        sb[2 * n + k] += w_ * geta;                                                                             \
        /* parameters: kappa (sum mubar * -lap), E and kBT through A and f_s */                                 \
        const REAL lv = (cv[ke] + cv[kw] + cv[ks] + cv[kn] - (REAL)4 * c_v) * idx2;                             \
        const REAL li = (ci[ke] + ci[kw] + ci[ks] + ci[kn] - (REAL)4 * c_i) * idx2;                             \
        const REAL le = (eta[ke] + eta[kw] + eta[ks] + eta[kn] - (REAL)4 * e) * idx2;                          \
        rKv += w_ * (-bv * lv);                                                                                 \
        rKi += w_ * (-bi * li);                                                                                 \
        rKe += w_ * (-be * le);                                                                                 \
        rE += w_ * (pE + bv * hh + be * (REAL)2 * (e - (REAL)1) * c_v);                                         \
        rEi += w_ * (pEi + bi * hh + be * (REAL)2 * (e - (REAL)1) * c_i);                                       \
        rT += w_ * (pT + bv * hh * l.dvs + bi * hh * l.dis + be * (REAL)2 * (e - (REAL)1) * l.ent);             \
        if (IMEX) rL += w_ * pL;                                                                                \
    }

/* The parameter sums of the backward, in double: each row's per-pixel terms summed in REAL by the vectorised loops,
 * the rows in double. S_DV, S_DI: the D_v, D_i terms before the factor 1 / kBT (kBT's gradient takes them too). */
enum { S_EV, S_EI, S_T, S_KV, S_KI, S_KE, S_DV, S_DI, S_L, S_COUNT };

/* What the backward of one batch element reads and writes. */
typedef struct {
    const REAL *s, *ub;      /* state and the adjoint of the update [3, H, W] */
    REAL *sb;                /* the state's adjoint [3, H, W] */
    const unsigned char *mk; /* the clamp's mask [H, W] or NULL */
    const REAL *mu, *de;     /* potentials (the forward's, or recomputed into buf) */
    REAL *rb, *mb, *ueb_buf; /* rbar = h q ubar (3), mubar (3), the masked eta adjoint (1) */
    const REAL *ueb;         /* the eta adjoint after the mask */
} Adjoint;

/* Sets up the backward of one element in buf (11 fields): the potentials' places and the eta adjoint's. */
static void adjoint_init(Adjoint *a, const Step *st, const REAL *s, const REAL *ub, REAL *sb,
                         const unsigned char *mk, const REAL *pot, REAL *buf) {
    const size_t n = st->n;
    a->s = s;
    a->ub = ub;
    a->sb = sb;
    a->mk = mk;
    a->mu = pot ? pot : buf;
    a->de = pot ? pot + 3 * n : buf + 3 * n;
    a->rb = buf + 4 * n;
    a->mb = buf + 7 * n;
    a->ueb_buf = buf + 10 * n;
    a->ueb = mk ? a->ueb_buf : ub + 2 * n;
}

/* Rows y0 <= y < y1 before pass 2: the potentials if they are not the forward's (recompute), the masked eta adjoint
 * and pass 1, the rate adjoints rbar = h q ubar. */
static void adjoint_rows(const Step *st, const Adjoint *a, int recompute, int y0, int y1) {
    const size_t n = st->n, k0 = (size_t)y0 * (size_t)st->W, k1 = (size_t)y1 * (size_t)st->W;
    const REAL *p = st->p, h = st->h;
    const REAL *cv = a->s, *ci = a->s + n, *eta = a->s + 2 * n, *ub = a->ub, *ueb = a->ueb, *de = a->de;
    REAL *rb = a->rb;
    if (recompute) potential_rows(a->s, (REAL *)a->mu, (REAL *)a->de, st->H, st->W, st->periodic, p, st->idx2, y0, y1);
    if (a->mk)
        for (size_t k = k0; k < k1; ++k) a->ueb_buf[k] = ub[2 * n + k] * (REAL)a->mk[k];
    if (st->imex) {
        for (size_t k = k0; k < k1; ++k) {
            const REAL kr = p[P_RB] + p[P_RS] * eta[k] * eta[k];
            const REAL qv = (REAL)1 / ((REAL)1 + h * kr * (ci[k] > 0 ? ci[k] : (REAL)0));
            const REAL qi = (REAL)1 / ((REAL)1 + h * kr * (cv[k] > 0 ? cv[k] : (REAL)0));
            const REAL qe = (REAL)1 / ((REAL)1 + h * de[k]);
            rb[k] = h * qv * ub[k];
            rb[n + k] = h * qi * ub[n + k];
            rb[2 * n + k] = h * qe * ueb[k];
        }
    } else {
        for (size_t k = k0; k < k1; ++k) {
            rb[k] = h * ub[k];
            rb[n + k] = h * ub[n + k];
            rb[2 * n + k] = h * ueb[k];
        }
    }
}

/* The local names the pixel statements of passes 2 and 3 use. */
#define ADJOINT_NAMES                                                                                           \
    const int H = st->H, W = st->W, periodic = st->periodic;                                                    \
    const size_t n = st->n;                                                                                     \
    const REAL *p = st->p, h = st->h, idx2 = st->idx2, mobv = st->mobv, mobi = st->mobi;                        \
    const REAL *cv = a->s, *ci = a->s + n, *eta = a->s + 2 * n, *mu = a->mu, *de = a->de;                       \
    const REAL *ub = a->ub, *ueb = a->ueb;                                                                      \
    REAL *rb = a->rb, *mb = a->mb, *sb = a->sb;                                                                 \
    (void)h;                                                                                                    \
    (void)de;                                                                                                   \
    (void)ub;                                                                                                   \
    (void)ueb;

/* Pass 2 of row yy: writes mubar and the transport/recombination parts of sbar; adds to the sums. */
static inline __attribute__((always_inline)) void pass2_row(const Step *st, const Adjoint *a, int yy, double *sum) {
    ADJOINT_NAMES
    REAL rDv = 0, rDi = 0, rL = 0;
    ROW_LOOP_ACCUM(yy, _Pragma("omp simd reduction(+ : rDv, rDi, rL)"), {
        REAL gcv = 0, gci = 0, geta = 0, tDv, tDi;
        /* both species: flux adjoints from the neighbouring rate adjoints */
        {
            REAL *mb_ = mb;
            SPECIES(cv, mu, rb, mobv, gcv, tDv)
        }
        {
            REAL *mb_ = mb + n;
            SPECIES(ci, (mu + n), (rb + n), mobi, gci, tDi)
        }
        rDv += w_ * tDv;
        rDi += w_ * tDi;
        /* recombination R = kr cv ci enters both rates with a minus sign */
        const REAL kr = p[P_RB] + p[P_RS] * eta[k] * eta[k];
        const REAL rbar = -(rb[k] + rb[n + k]);
        gcv += rbar * kr * ci[k];
        gci += rbar * kr * cv[k];
        geta += rbar * (REAL)2 * p[P_RS] * eta[k] * cv[k] * ci[k];
        /* eta rate = -L mu_eta */
        mb[2 * n + k] = -p[P_L] * rb[2 * n + k];
        rL += w_ * (-rb[2 * n + k] * mu[2 * n + k]);
        sb[k] = ub[k] + gcv;
        sb[n + k] = ub[n + k] + gci;
        sb[2 * n + k] = ueb[k] + geta;
    })
    sum[S_DV] += rDv;
    sum[S_DI] += rDi;
    sum[S_L] += rL;
}

/* Pass 3 of row y: the adjoint of the chemical potentials; reads mubar of rows y - 1, y, y + 1. */
static inline __attribute__((always_inline)) void pass3_row(const Step *st, const Adjoint *a, int y, double *sum) {
    ADJOINT_NAMES
    REAL rKv = 0, rKi = 0, rKe = 0, rE = 0, rEi = 0, rT = 0, rL = 0;
    if (st->imex)
        ROW_LOOP_ACCUM(y, _Pragma("omp simd reduction(+ : rKv, rKi, rKe, rE, rEi, rT, rL)"), BACKWARD_PIXEL(1))
    else
        ROW_LOOP_ACCUM(y, _Pragma("omp simd reduction(+ : rKv, rKi, rKe, rE, rEi, rT)"), BACKWARD_PIXEL(0))
    sum[S_KV] += rKv;
    sum[S_KI] += rKi;
    sum[S_KE] += rKe;
    sum[S_EV] += rE;
    sum[S_EI] += rEi;
    sum[S_T] += rT;
    sum[S_L] += rL;
}

DEFINE_BACKWARD_DRIVERS

/* pot: the forward's potentials ([B, 4, H, W]), or NULL to recompute them. threads: how many threads may share the
 * batch elements; each element's sums are kept apart and added in batch order, so the gradients do not depend on
 * the thread count. Returns 1 if a work buffer could not be allocated. */
int FN(void_backward)(const REAL *state, const REAL *ubar, REAL *sbar, double *pbar, int B, int H, int W,
                      int periodic, const double *pd, double h_, double dx, int imex, const unsigned char *mask,
                      const REAL *pot, int threads) {
    Step st;
    step_init(&st, H, W, periodic, pd, h_, dx, imex, 1.0);
    const size_t n = st.n;
    const int plan = thread_plan(threads, B, H, W);
    const int slots = plan == 1 ? (threads < B ? threads : B) : 1;
    /* per thread: mu (3), d_eta (1), rbar (3), mubar (3), masked eta adjoint (1); the sums of each row */
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
                 mask ? mask + (size_t)(b) * n : NULL, pot ? pot + (size_t)(b) * 4 * n : NULL,                  \
                 buf + (size_t)(slot) * 11 * n);                                                                \
    double *rows = sums + (size_t)(b) * (size_t)H * S_COUNT;
    BACKWARD_BATCH(g)
#undef ADJOINT_OF
    /* D_v and D_i enter through the mobilities D / kBT */
    const double T = (double)st.p[P_T];
    pbar[0] = g[S_EV];
    pbar[1] = g[S_EI];
    pbar[2] = g[S_T] - (g[S_DV] * (double)st.mobv + g[S_DI] * (double)st.mobi) / T;
    pbar[3] = g[S_KV];
    pbar[4] = g[S_KI];
    pbar[5] = g[S_KE];
    pbar[6] = g[S_DV] / T;
    pbar[7] = g[S_DI] / T;
    pbar[8] = g[S_L];
    free(buf);
    free(sums);
    return 0;
}

/* The explicit stability estimate of the state (ConservativeVoidModel.stability_rate and implicit_stability_rate,
 * term by term): out[0], out[1] = max over pixels of the c_v and c_i stiffness f + M kappa k (without the factor
 * k), out[2] = max of |d2f/deta2| (explicit) or of max(-d2f/deta2, 0) (imex). k = 8 / dx^2 is the Laplacian
 * bound; the neighbours of the low-concentration term wrap around the grid, as in the plain path. */
int FN(void_stability)(const REAL *state, int B, int H, int W, const double *pd, double dx, int imex, double *out) {
    REAL p[P_ALL];
    load_params(p, pd);
    const REAL k = (REAL)(8.0 / (dx * dx));
    const size_t n = (size_t)H * (size_t)W;
    const REAL mobv = p[P_DV] / p[P_T], mobi = p[P_DI] / p[P_T];
    const REAL kv = mobv * p[P_KV] * k, ki = mobi * p[P_KI] * k;
    REAL best_v = -INFINITY, best_i = -INFINITY, best_e = -INFINITY;
    int nans = 0; /* NaN in any term makes the estimate NaN, as the plain path's amax does */
    for (int b = 0; b < B; ++b) {
        const REAL *cv = state + (size_t)b * 3 * n, *ci = cv + n, *eta = cv + 2 * n;
        for (int y = 0; y < H; ++y) {
            const size_t r_ = (size_t)y * (size_t)W;
            const size_t rn_ = (size_t)(y == 0 ? H - 1 : y - 1) * (size_t)W;
            const size_t rs_ = (size_t)(y == H - 1 ? 0 : y + 1) * (size_t)W;
            REAL rv = -INFINITY, ri = -INFINITY, re = -INFINITY;
            REAL rnan = 0;
#define STAB_PIXEL(k0, ke, kw, ks, kn)                                                                        \
    {                                                                                                      \
        const REAL c_v = cv[k0], c_i = ci[k0], e = eta[k0];                                                \
        const REAL h = (e - (REAL)1) * (e - (REAL)1), j = e * e;                                           \
        const REAL pv = c_v > 0 ? c_v : (REAL)0, pi = c_i > 0 ? c_i : (REAL)0;                             \
        const REAL sat = (REAL)1 - c_v - c_i;                                                              \
        const REAL inv_s = h / (sat > p[P_SAT] ? sat : p[P_SAT]);                                          \
        const REAL nbv = MAX2(MAX2(POS(cv[kw]), POS(cv[ke])), MAX2(POS(cv[kn]), POS(cv[ks])));             \
        const REAL nbi = MAX2(MAX2(POS(ci[kw]), POS(ci[ke])), MAX2(POS(ci[kn]), POS(ci[ks])));             \
        const REAL lowv = pv < p[P_EPS] ? nbv / p[P_EPS] : (REAL)0;                                         \
        const REAL lowi = pi < p[P_EPS] ? nbi / p[P_EPS] : (REAL)0;                                         \
        const REAL fv = p[P_DV] * h + (REAL)2 * j * (mobv * pv) + p[P_DV] * pv * inv_s + p[P_DV] * lowv;   \
        const REAL fi = p[P_DI] * h + (REAL)2 * j * (mobi * pi) + p[P_DI] * pi * inv_s + p[P_DI] * lowi;   \
        const REAL tv = fv + pv * kv, ti = fi + pi * ki;                                                   \
        Local l;                                                                                           \
        local_terms(c_v, c_i, p, &l);                                                                      \
        const REAL curv = (REAL)2 * (l.fs + (c_v - (REAL)1) * (c_v - (REAL)1) + c_i * c_i);                \
        const REAL te = curv < 0 ? -curv : (imex ? (REAL)0 : curv);                                        \
        rv = tv > rv ? tv : rv;                                                                            \
        ri = ti > ri ? ti : ri;                                                                            \
        re = te > re ? te : re;                                                                            \
        rnan += tv + ti + te; /* NaN propagates through the sum (the maxima skip it) */                    \
    }
#define POS(q) ((q) > 0 ? (q) : (REAL)0)
#define MAX2(a, b) ((a) > (b) ? (a) : (b))
            STAB_PIXEL(r_, r_ + (W > 1 ? 1 : 0), r_ + (size_t)W - 1, rs_, rn_)
            _Pragma("omp simd reduction(max : rv, ri, re) reduction(+ : rnan)")
            for (size_t x = 1; x < (size_t)W - 1; ++x) {
                const size_t k0 = r_ + x;
                STAB_PIXEL(k0, k0 + 1, k0 - 1, rs_ + x, rn_ + x)
            }
            if (W > 1) {
                const size_t k0 = r_ + (size_t)W - 1;
                STAB_PIXEL(k0, r_, k0 - 1, rs_ + (size_t)W - 1, rn_ + (size_t)W - 1)
            }
#undef POS
#undef MAX2
#undef STAB_PIXEL
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

/* The stochastic increment of one step (ConservativeVoidModel.forcing_increment, term by term): cascades
 * dt * (b, 1 - b, 2b - 1) * V_g * amplitude where eta < eta_max and gate <= p_casc, conservative Langevin noise on
 * c_v and c_i through face mobilities (harmonic means of the cells' M = D max(c, 0) / kBT, periodic neighbours, as
 * the plain path's roll), and point noise on eta. xi: [B, 5, H, W] (x faces of c_v, c_i; y faces; eta).
 * ex: p_casc, V_g, b, noise, eta_max, dt. */
#ifdef FAST_LOG
#define TINY ((REAL)1.17549435e-38f)
#define SQRT(x) sqrtf(x)
#else
#define TINY ((REAL)2.2250738585072014e-308)
#define SQRT(x) sqrt(x)
#endif
#define POS(v) ((v) > 0 ? (v) : (REAL)0)
#define SQRT0(v) ((v) > 0 ? SQRT(v) : (REAL)0)

static inline __attribute__((always_inline)) REAL harmonic(REAL a, REAL b) { return (REAL)2 * a * b / (a + b + TINY); }

/* What the forcing's passes share: the grid, the mobilities over c, the noise amplitudes and the cascade values. */
typedef struct {
    int H, W;
    size_t n;
    REAL kbt, L, mobv, mobi, amp, ampe, pcasc, vg, b, emax, dt, dx;
} Forcing;

static void forcing_init(Forcing *fc, int H, int W, const double *pd, const double *ex, double dx_) {
    fc->H = H;
    fc->W = W;
    fc->n = (size_t)H * (size_t)W;
    fc->kbt = (REAL)pd[P_T];
    fc->L = (REAL)pd[P_L];
    fc->mobv = (REAL)pd[P_DV] / fc->kbt;
    fc->mobi = (REAL)pd[P_DI] / fc->kbt;
    fc->pcasc = (REAL)ex[0];
    fc->vg = (REAL)ex[1];
    fc->b = (REAL)ex[2];
    const REAL noise = (REAL)ex[3];
    fc->emax = (REAL)ex[4];
    fc->dt = (REAL)ex[5];
    fc->dx = (REAL)dx_;
    fc->amp = noise * (REAL)sqrt((REAL)2 * fc->kbt * fc->dt) / fc->dx;
    fc->ampe = noise * (REAL)sqrt((REAL)2 * fc->kbt * fc->L * fc->dt);
}

/* The names the forcing's row passes use: one element's fields and the work buffer. */
#define FORCING_NAMES                                                                                           \
    const int H = fc->H, W = fc->W, periodic = 1;                                                               \
    const size_t n = fc->n;                                                                                     \
    const REAL mobv = fc->mobv, mobi = fc->mobi;                                                                \
    const REAL *cv = s, *ci = s + n;                                                                            \
    (void)mobv;                                                                                                 \
    (void)mobi;                                                                                                 \
    (void)ci;

/* Rows [y0, y1) of the face noise fluxes z (x faces of c_v, c_i; y faces of c_v, c_i) of one element. */
static void face_noise_rows(const Forcing *fc, const REAL *s, const REAL *xi, REAL *z, int y0, int y1) {
    FORCING_NAMES
    for (int y = y0; y < y1; ++y)
        ROW_LOOP_IDEMPOTENT(y, {
            const REAL mv = POS(cv[k]) * mobv, mi = POS(ci[k]) * mobi;
            const REAL fev = harmonic(mv, POS(cv[ke]) * mobv), fei = harmonic(mi, POS(ci[ke]) * mobi);
            const REAL fsv = harmonic(mv, POS(cv[ks]) * mobv), fsi = harmonic(mi, POS(ci[ks]) * mobi);
            z[k] = SQRT0(fev) * xi[k];
            z[n + k] = SQRT0(fei) * xi[n + k];
            z[2 * n + k] = SQRT0(fsv) * xi[2 * n + k];
            z[3 * n + k] = SQRT0(fsi) * xi[3 * n + k];
        })
}

/* Rows [y0, y1) of the increment of one element, from the face noise z of those rows and the rows above. */
static void forcing_rows(const Forcing *fc, const REAL *s, const REAL *g, const REAL *a, const REAL *xi, const REAL *z,
                         REAL *o, int y0, int y1) {
    FORCING_NAMES
    const REAL *eta = s + 2 * n;
    const REAL vg = fc->vg, emax = fc->emax, pcasc = fc->pcasc, dx = fc->dx, dt = fc->dt, b = fc->b;
    const REAL amp = fc->amp, ampe = fc->ampe;
    for (int y = y0; y < y1; ++y)
        ROW_LOOP_IDEMPOTENT(y, {
            const REAL casc = vg * a[k] * ((eta[k] < emax) & (g[k] <= pcasc) ? (REAL)1 : (REAL)0);
            const REAL divv = (z[k] - z[kw] + z[2 * n + k] - z[2 * n + kn]) / dx;
            const REAL divi = (z[n + k] - z[n + kw] + z[3 * n + k] - z[3 * n + kn]) / dx;
            o[k] = dt * (b * casc) + amp * divv;
            o[n + k] = dt * (((REAL)1 - b) * casc) + amp * divi;
            o[2 * n + k] = dt * (((REAL)2 * b - (REAL)1) * casc) + ampe * xi[4 * n + k];
        })
}

/* Runs PASS1(y0, y1) and then PASS2(y0, y1) over the H rows of one element: with plan 2 the threads share the rows
 * (each pass waits for the one before), else one thread does all. */
#define FORCING_ELEMENT(PASS1, PASS2)                                                                           \
    if (plan == 2) {                                                                                            \
        _Pragma("omp parallel num_threads(threads)") {                                                          \
            _Pragma("omp for schedule(static)") for (int y = 0; y < H; ++y) PASS1(y, y + 1);                    \
            _Pragma("omp for schedule(static)") for (int y = 0; y < H; ++y) PASS2(y, y + 1);                    \
        }                                                                                                       \
    } else {                                                                                                    \
        PASS1(0, H);                                                                                            \
        PASS2(0, H);                                                                                            \
    }

/* Runs the statements given for every batch element bb: with plan 1 the threads share the elements; else the
 * elements in turn, outside any parallel region, so that plan 2's rows are shared by the threads of the same pool as
 * torch's own (a parallel region nested in a team of one would start threads of its own, which then compete with
 * torch's waiting threads for the cores: a 256² step's increment and adjoint took 8x longer on two threads). */
#define FORCING_BATCH(...)                                                                                      \
    if (plan == 1) {                                                                                            \
        _Pragma("omp parallel for num_threads(slots) schedule(static)") for (int bb = 0; bb < B; ++bb)          \
            __VA_ARGS__                                                                                         \
    } else {                                                                                                    \
        for (int bb = 0; bb < B; ++bb) __VA_ARGS__                                                              \
    }

/* What both forcing entry points set up: the values (f, read through fc), the thread plan, the work slots and a work
 * buffer of `fields` fields per slot (NULL if it could not be allocated). */
#define FORCING_SETUP(fields)                                                                                   \
    Forcing f;                                                                                                  \
    const Forcing *fc = &f;                                                                                     \
    forcing_init(&f, H, W, pd, ex, dx_);                                                                        \
    const size_t n = f.n;                                                                                       \
    const int plan = thread_plan(threads, B, H, W);                                                             \
    const int slots = plan == 1 ? (threads < B ? threads : B) : 1;                                              \
    (void)threads;                                                                                              \
    REAL *work = (REAL *)malloc(sizeof(REAL) * (fields) * n * (size_t)slots);

/* The stochastic increment of a batch (see above). threads: as for the step; the result does not depend on it.
 * Returns 1 if the work buffer could not be allocated. */
int FN(void_forcing)(const REAL *state, const REAL *gate, const REAL *ampl, const REAL *xi, REAL *out, int B, int H,
                     int W, const double *pd, const double *ex, double dx_, int threads) {
    FORCING_SETUP(4)
    if (!work) return 1;
#define FACES_(y0, y1) face_noise_rows(fc, s, x5, z, (y0), (y1))
#define OUT_(y0, y1) forcing_rows(fc, s, g, a, x5, z, o, (y0), (y1))
    FORCING_BATCH({
        const REAL *s = state + (size_t)bb * 3 * n, *x5 = xi + (size_t)bb * 5 * n;
        const REAL *g = gate + (size_t)bb * n, *a = ampl + (size_t)bb * n;
        REAL *z = work + (size_t)4 * n * (size_t)(plan == 1 ? thread_slot() : 0), *o = out + (size_t)bb * 3 * n;
        FORCING_ELEMENT(FACES_, OUT_)
    })
#undef FACES_
#undef OUT_
    free(work);
    return 0;
}

/* The adjoint of one face's noise flux z = sqrt(harmonic(ma, mb)) x given zbar = dL/dz: the adjoints reaching the
 * mobilities of the face's own cell (*wa) and of its neighbour (*wb). Returns z zbar (the amplitude's share). A face
 * of zero mobility passes nothing (and its den² may underflow). */
static inline __attribute__((always_inline)) REAL face_adjoint(REAL ma, REAL mb, REAL x, REAL zbar, REAL *wa,
                                                               REAL *wb) {
    /* one reciprocal of the denominator and one division by the root: the loop is division-bound (five divisions a
     * face before: the adjoint at 8 x 128^2 took 0.80-0.82 ms, now 0.52-0.54 ms on an Intel Xeon) */
    const REAL inv = (REAL)1 / (ma + mb + TINY);
    const REAL face = (REAL)2 * ma * mb * inv;
    const REAL sq = SQRT0(face);
    const REAL q = sq > 0 ? zbar * x * (REAL)0.5 * inv / sq : (REAL)0;
    *wa = q * (REAL)2 * mb * ((mb + TINY) * inv);
    *wb = q * (REAL)2 * ma * ((ma + TINY) * inv);
    return sq * x * zbar;
}

/* Sums of the forcing's adjoint, per row: kBT (mobilities), kBT (noise amplitudes), D_v, D_i, eta noise. */
enum { F_T, F_AMP, F_DV, F_DI, F_ETA, F_COUNT };

/* Pass 1 of rows [y0, y1): the adjoints reaching the face mobilities (w: per species, east face own cell, east face
 * neighbour, south face own cell, south face neighbour), and the noise amplitude's sum. */
static void forcing_adjoint_rows(const Forcing *fc, const REAL *s, const REAL *xi, const REAL *ob, REAL *w, double *rows,
                                 int y0, int y1) {
    FORCING_NAMES
    const REAL c = fc->amp / fc->dx;
    for (int y = y0; y < y1; ++y) {
        REAL rA = 0;
        ROW_LOOP_ACCUM(y, _Pragma("omp simd reduction(+ : rA)"), {
            const REAL mv = POS(cv[k]) * mobv, mi = POS(ci[k]) * mobi;
            REAL acc = face_adjoint(mv, POS(cv[ke]) * mobv, xi[k], c * (ob[k] - ob[ke]), &w[k], &w[n + k]);
            acc += face_adjoint(mv, POS(cv[ks]) * mobv, xi[2 * n + k], c * (ob[k] - ob[ks]), &w[2 * n + k],
                                &w[3 * n + k]);
            acc += face_adjoint(mi, POS(ci[ke]) * mobi, xi[n + k], c * (ob[n + k] - ob[n + ke]), &w[4 * n + k],
                                &w[5 * n + k]);
            acc += face_adjoint(mi, POS(ci[ks]) * mobi, xi[3 * n + k], c * (ob[n + k] - ob[n + ks]), &w[6 * n + k],
                                &w[7 * n + k]);
            rA += w_ * acc;
        })
        rows[(size_t)y * F_COUNT + F_AMP] += rA;
    }
}

/* Pass 2 of rows [y0, y1): each cell's mobility adjoint (its own east and south faces, and the faces of its west and
 * north neighbours, whose second cell it is) gives sbar and the sums for kBT, D_v and D_i; eta's point noise the
 * sums for kBT and L. */
static void forcing_adjoint2_rows(const Forcing *fc, const REAL *s, const REAL *xi, const REAL *ob, const REAL *w,
                                  REAL *sb, double *rows, int y0, int y1) {
    FORCING_NAMES
    const REAL ampe = fc->ampe;
    for (int y = y0; y < y1; ++y) {
        REAL rT = 0, rDv = 0, rDi = 0, rE = 0;
        ROW_LOOP_ACCUM(y, _Pragma("omp simd reduction(+ : rT, rDv, rDi, rE)"), {
            const REAL mbv = w[k] + w[2 * n + k] + w[n + kw] + w[3 * n + kn];
            const REAL mbi = w[4 * n + k] + w[6 * n + k] + w[5 * n + kw] + w[7 * n + kn];
            const REAL pv = POS(cv[k]), pi = POS(ci[k]);
            sb[k] = cv[k] >= 0 ? mbv * mobv : (REAL)0;
            sb[n + k] = ci[k] >= 0 ? mbi * mobi : (REAL)0;
            sb[2 * n + k] = 0;
            rT += w_ * -(mbv * pv * mobv + mbi * pi * mobi);
            rDv += w_ * (mbv * pv);
            rDi += w_ * (mbi * pi);
            rE += w_ * (ob[2 * n + k] * (ampe * xi[4 * n + k]));
        })
        double *r = rows + (size_t)y * F_COUNT;
        r[F_T] += rT;
        r[F_DV] += rDv;
        r[F_DI] += rDi;
        r[F_ETA] += rE;
    }
}

/* Adjoint of void_forcing: sbar (c_v, c_i; eta gets none: the cascade gate is a step) and the sums for kBT, D_v,
 * D_i, L (pbar[P_T], pbar[P_DV], pbar[P_DI], pbar[P_L]; the others are left alone). The sums are kept per row and
 * added in order, so they do not depend on the thread count. */
int FN(void_forcing_backward)(const REAL *state, const REAL *xi, const REAL *obar, REAL *sbar, double *pbar, int B,
                              int H, int W, const double *pd, const double *ex, double dx_, int threads) {
    FORCING_SETUP(8)
    double *sums = (double *)calloc((size_t)B * (size_t)H * F_COUNT, sizeof(double));
    if (!work || !sums) {
        free(work);
        free(sums);
        return 1;
    }
#define ADJ1_(y0, y1) forcing_adjoint_rows(fc, s, x5, ob, w, rows, (y0), (y1))
#define ADJ2_(y0, y1) forcing_adjoint2_rows(fc, s, x5, ob, w, sb, rows, (y0), (y1))
    FORCING_BATCH({
        const REAL *s = state + (size_t)bb * 3 * n, *x5 = xi + (size_t)bb * 5 * n, *ob = obar + (size_t)bb * 3 * n;
        REAL *w = work + (size_t)8 * n * (size_t)(plan == 1 ? thread_slot() : 0), *sb = sbar + (size_t)bb * 3 * n;
        double *rows = sums + (size_t)bb * (size_t)H * F_COUNT;
        FORCING_ELEMENT(ADJ1_, ADJ2_)
    })
#undef ADJ1_
#undef ADJ2_
    double g[F_COUNT] = {0};
    for (size_t r = 0; r < (size_t)B * (size_t)H; ++r)
        for (int i = 0; i < F_COUNT; ++i) g[i] += sums[r * F_COUNT + i];
    const double kbt = (double)f.kbt;
    pbar[P_T] += g[F_T] / kbt + (g[F_AMP] + g[F_ETA]) / (2.0 * kbt);
    pbar[P_DV] += g[F_DV] / kbt;
    pbar[P_DI] += g[F_DI] / kbt;
    pbar[P_L] += g[F_ETA] / (2.0 * (double)f.L);
    free(work);
    free(sums);
    return 0;
}
