/* Fused explicit / IMEX Euler increment of the conservative void model and its adjoint (periodic grid,
 * upwind face mobilities). Compiled twice, with REAL = float and REAL = double (see fused.py).
 *
 * Forward: u = s + h * rate(s) / (1 + h * d(s))   (d = 0 for the explicit step), state [B, 3, H, W].
 * Backward: given ub = dL/du, s_bar = dL/ds and the gradients of the nine learned parameters
 * (E_v, E_i, kBT, kappa_v, kappa_i, kappa_eta, D_v, D_i, L), accumulated in double.
 * The formulas mirror ConservativeVoidModel in void_model.py term by term (the plain PyTorch path is the
 * reference; the tests compare the two).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifndef REAL
#define REAL float
#endif
#ifndef SUFFIX
#define SUFFIX _f32
#endif
#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define FN(name) CAT(name, SUFFIX)

/* parameter vector */
enum { P_EV, P_EI, P_T, P_KV, P_KI, P_KE, P_DV, P_DI, P_L, P_RB, P_RS, P_EPS, P_SAT, P_COUNT };

/* x ln x continued below delta by its quadratic Taylor expansion: g, g' - 1 and g'' (= 1 / max(x, delta)). */
static inline void entropy(REAL x, REAL delta, REAL *g, REAL *dg, REAL *ddg) {
    REAL xc = x > delta ? x : delta;
    REAL lg = (REAL)log(xc);
    REAL d = x - xc;
    *g = xc * lg + (lg + (REAL)1) * d + d * d / ((REAL)2 * delta);
    *dg = lg + d / delta;
    *ddg = (REAL)1 / xc;
}

typedef struct {
    REAL fs, av, ai, ent; /* f_s, dfs/dc_v, dfs/dc_i, gv + gi + gs */
    REAL ivs, iis, is;    /* 1/xc_v + ..., derivatives: 1/xc_v, 1/xc_i, 1/xc_s */
    REAL dvs, dis;        /* dv - ds, di - ds */
} Local;

static inline void local_terms(REAL cv, REAL ci, const REAL *p, Local *o) {
    REAL gv, dv, hv, gi, di, hi, gs, ds, hs;
    entropy(cv, p[P_EPS], &gv, &dv, &hv);
    entropy(ci, p[P_EPS], &gi, &di, &hi);
    entropy((REAL)1 - cv - ci, p[P_SAT], &gs, &ds, &hs);
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

#define IDX(y, x) ((size_t)(y) * (size_t)W + (size_t)(x))

/* Chemical potentials of one batch element into mu (3 planes); with imex also d_eta into de (1 plane). */
static void potentials(const REAL *s, REAL *mu, REAL *de, int H, int W, const REAL *p, REAL idx2) {
    const size_t n = (size_t)H * (size_t)W;
    const REAL *cvp = s, *cip = s + n, *etp = s + 2 * n;
    for (int y = 0; y < H; ++y) {
        const int yn = y == 0 ? H - 1 : y - 1, ys = y == H - 1 ? 0 : y + 1;
        for (int x = 0; x < W; ++x) {
            const int xw = x == 0 ? W - 1 : x - 1, xe = x == W - 1 ? 0 : x + 1;
            const size_t k = IDX(y, x);
            const REAL cv = cvp[k], ci = cip[k], eta = etp[k];
            Local l;
            local_terms(cv, ci, p, &l);
            const REAL lv = (cvp[IDX(y, xe)] + cvp[IDX(y, xw)] + cvp[IDX(ys, x)] + cvp[IDX(yn, x)] - (REAL)4 * cv) * idx2;
            const REAL li = (cip[IDX(y, xe)] + cip[IDX(y, xw)] + cip[IDX(ys, x)] + cip[IDX(yn, x)] - (REAL)4 * ci) * idx2;
            const REAL le =
                (etp[IDX(y, xe)] + etp[IDX(y, xw)] + etp[IDX(ys, x)] + etp[IDX(yn, x)] - (REAL)4 * eta) * idx2;
            const REAL hh = (eta - (REAL)1) * (eta - (REAL)1), j = eta * eta;
            const REAL fv = (cv - (REAL)1) * (cv - (REAL)1) + ci * ci;
            mu[k] = hh * l.av + (REAL)2 * j * (cv - (REAL)1) - p[P_KV] * lv;
            mu[n + k] = hh * l.ai + (REAL)2 * j * ci - p[P_KI] * li;
            mu[2 * n + k] = (REAL)2 * (eta - (REAL)1) * l.fs + (REAL)2 * eta * fv - p[P_KE] * le;
            if (de) {
                const REAL x2 = (REAL)2 * (l.fs + fv);
                de[k] = p[P_L] * (x2 > 0 ? x2 : (REAL)0);
            }
        }
    }
}

/* Upwind flux divergence of species c at (y, x) (without 1/dx^2). */
static inline REAL transport(const REAL *c, const REAL *mu, int H, int W, int y, int x, REAL mob) {
    const int yn = y == 0 ? H - 1 : y - 1, ys = y == H - 1 ? 0 : y + 1;
    const int xw = x == 0 ? W - 1 : x - 1, xe = x == W - 1 ? 0 : x + 1;
    const size_t k = IDX(y, x), ke = IDX(y, xe), kw = IDX(y, xw), ks = IDX(ys, x), kn = IDX(yn, x);
#define MOB(q) (mob * (c[q] > 0 ? c[q] : (REAL)0))
    const REAL m = MOB(k);
    const REAL fe = (mu[ke] > mu[k] ? MOB(ke) : m) * (mu[ke] - mu[k]);
    const REAL fw = (mu[k] > mu[kw] ? m : MOB(kw)) * (mu[k] - mu[kw]);
    const REAL fs = (mu[ks] > mu[k] ? MOB(ks) : m) * (mu[ks] - mu[k]);
    const REAL fn = (mu[k] > mu[kn] ? m : MOB(kn)) * (mu[k] - mu[kn]);
#undef MOB
    return fe - fw + fs - fn;
}

int FN(void_forward)(const REAL *state, REAL *out, int B, int H, int W, const double *pd, double h_, double dx,
                     int imex) {
    REAL p[P_COUNT];
    for (int i = 0; i < P_COUNT; ++i) p[i] = (REAL)pd[i];
    const REAL h = (REAL)h_, idx2 = (REAL)(1.0 / (dx * dx));
    const size_t n = (size_t)H * (size_t)W;
    REAL *mu = (REAL *)malloc(sizeof(REAL) * 4 * n);
    if (!mu) return 1;
    REAL *de = imex ? mu + 3 * n : NULL;
    const REAL mobv = p[P_DV] / p[P_T], mobi = p[P_DI] / p[P_T];
    for (int b = 0; b < B; ++b) {
        const REAL *s = state + (size_t)b * 3 * n;
        REAL *u = out + (size_t)b * 3 * n;
        potentials(s, mu, de, H, W, p, idx2);
        const REAL *cv = s, *ci = s + n, *eta = s + 2 * n;
        for (int y = 0; y < H; ++y) {
            for (int x = 0; x < W; ++x) {
                const size_t k = IDX(y, x);
                const REAL tv = transport(cv, mu, H, W, y, x, mobv) * idx2;
                const REAL ti = transport(ci, mu + n, H, W, y, x, mobi) * idx2;
                const REAL kr = p[P_RB] + p[P_RS] * eta[k] * eta[k];
                const REAL r = kr * cv[k] * ci[k];
                const REAL rv = tv - r, ri = ti - r, re = -p[P_L] * mu[2 * n + k];
                if (imex) {
                    const REAL dv = kr * (ci[k] > 0 ? ci[k] : (REAL)0), di = kr * (cv[k] > 0 ? cv[k] : (REAL)0);
                    u[k] = cv[k] + h * rv / ((REAL)1 + h * dv);
                    u[n + k] = ci[k] + h * ri / ((REAL)1 + h * di);
                    u[2 * n + k] = eta[k] + h * re / ((REAL)1 + h * de[k]);
                } else {
                    u[k] = cv[k] + h * rv;
                    u[n + k] = ci[k] + h * ri;
                    u[2 * n + k] = eta[k] + h * re;
                }
            }
        }
    }
    free(mu);
    return 0;
}

int FN(void_backward)(const REAL *state, const REAL *ubar, REAL *sbar, double *pbar, int B, int H, int W,
                      const double *pd, double h_, double dx, int imex) {
    REAL p[P_COUNT];
    for (int i = 0; i < P_COUNT; ++i) p[i] = (REAL)pd[i];
    const REAL h = (REAL)h_, idx2 = (REAL)(1.0 / (dx * dx));
    const size_t n = (size_t)H * (size_t)W;
    /* mu (3), d_eta (1), rbar = h q ubar (3), mubar (3) */
    REAL *buf = (REAL *)malloc(sizeof(REAL) * 10 * n);
    if (!buf) return 1;
    REAL *mu = buf, *de = buf + 3 * n, *rb = buf + 4 * n, *mb = buf + 7 * n;
    const REAL mobv = p[P_DV] / p[P_T], mobi = p[P_DI] / p[P_T];
    double gEv = 0, gEi = 0, gT = 0, gkv = 0, gki = 0, gke = 0, gDv = 0, gDi = 0, gL = 0;
    for (int b = 0; b < B; ++b) {
        const REAL *s = state + (size_t)b * 3 * n;
        const REAL *ub = ubar + (size_t)b * 3 * n;
        REAL *sb = sbar + (size_t)b * 3 * n;
        const REAL *cv = s, *ci = s + n, *eta = s + 2 * n;
        potentials(s, mu, de, H, W, p, idx2);
        /* pass 1: rate adjoints rbar = h q ubar */
        for (size_t k = 0; k < n; ++k) {
            REAL qv = 1, qi = 1, qe = 1;
            if (imex) {
                const REAL kr = p[P_RB] + p[P_RS] * eta[k] * eta[k];
                qv = (REAL)1 / ((REAL)1 + h * kr * (ci[k] > 0 ? ci[k] : (REAL)0));
                qi = (REAL)1 / ((REAL)1 + h * kr * (cv[k] > 0 ? cv[k] : (REAL)0));
                qe = (REAL)1 / ((REAL)1 + h * de[k]);
            }
            rb[k] = h * qv * ub[k];
            rb[n + k] = h * qi * ub[n + k];
            rb[2 * n + k] = h * qe * ub[2 * n + k];
        }
        /* pass 2: adjoints of the transport, recombination and implicit diagonal; mubar; local state parts */
        for (int y = 0; y < H; ++y) {
            const int yn = y == 0 ? H - 1 : y - 1, ys = y == H - 1 ? 0 : y + 1;
            for (int x = 0; x < W; ++x) {
                const int xw = x == 0 ? W - 1 : x - 1, xe = x == W - 1 ? 0 : x + 1;
                const size_t k = IDX(y, x), ke = IDX(y, xe), kw = IDX(y, xw), ks = IDX(ys, x), kn = IDX(yn, x);
                REAL gcv = 0, gci = 0, geta = 0;
                for (int sp = 0; sp < 2; ++sp) {
                    const REAL *c = sp == 0 ? cv : ci;
                    const REAL *m_ = mu + sp * n;
                    const REAL *r_ = rb + sp * n;
                    const REAL mob = sp == 0 ? mobv : mobi;
#define MOB(q) (mob * (c[q] > 0 ? c[q] : (REAL)0))
                    const REAL fbe = (r_[k] - r_[ke]) * idx2, fbw = (r_[kw] - r_[k]) * idx2;
                    const REAL fbs = (r_[k] - r_[ks]) * idx2, fbn = (r_[kn] - r_[k]) * idx2;
                    const REAL m = MOB(k);
                    const int ue = m_[ke] > m_[k], uw = m_[k] > m_[kw], us = m_[ks] > m_[k], un = m_[k] > m_[kn];
                    const REAL mfe = ue ? MOB(ke) : m, mfw = uw ? m : MOB(kw);
                    const REAL mfs = us ? MOB(ks) : m, mfn = un ? m : MOB(kn);
                    mb[sp * n + k] = -fbe * mfe + fbw * mfw - fbs * mfs + fbn * mfn;
                    /* mobility adjoint of this cell: the faces whose upwind cell it is */
                    REAL mbar = 0;
                    if (!ue) mbar += fbe * (m_[ke] - m_[k]);
                    if (uw) mbar += fbw * (m_[k] - m_[kw]);
                    if (!us) mbar += fbs * (m_[ks] - m_[k]);
                    if (un) mbar += fbn * (m_[k] - m_[kn]);
#undef MOB
                    const REAL cp = c[k] > 0 ? c[k] : (REAL)0;
                    const REAL gc = c[k] >= 0 ? mbar * mob : (REAL)0;
                    if (sp == 0) {
                        gcv += gc;
                        gDv += (double)mbar * cp / p[P_T];
                    } else {
                        gci += gc;
                        gDi += (double)mbar * cp / p[P_T];
                    }
                    gT -= (double)mbar * mob * cp / p[P_T];
                }
                /* recombination R = kr cv ci enters both rates with a minus sign */
                const REAL kr = p[P_RB] + p[P_RS] * eta[k] * eta[k];
                const REAL rbar = -(rb[k] + rb[n + k]);
                gcv += rbar * kr * ci[k];
                gci += rbar * kr * cv[k];
                geta += rbar * (REAL)2 * p[P_RS] * eta[k] * cv[k] * ci[k];
                /* eta rate = -L mu_eta */
                mb[2 * n + k] = -p[P_L] * rb[2 * n + k];
                gL -= (double)rb[2 * n + k] * mu[2 * n + k];
                if (imex) {
                    /* d_bar = -rbar * h * rate * q (with rbar = h q ubar already) */
                    const REAL tv = transport(cv, mu, H, W, y, x, mobv) * idx2;
                    const REAL ti = transport(ci, mu + n, H, W, y, x, mobi) * idx2;
                    const REAL r = kr * cv[k] * ci[k];
                    const REAL civ = ci[k] > 0 ? ci[k] : (REAL)0, cvv = cv[k] > 0 ? cv[k] : (REAL)0;
                    const REAL qv = (REAL)1 / ((REAL)1 + h * kr * civ), qi = (REAL)1 / ((REAL)1 + h * kr * cvv);
                    const REAL qe = (REAL)1 / ((REAL)1 + h * de[k]);
                    const REAL dbv = -rb[k] * h * (tv - r) * qv;
                    const REAL dbi = -rb[n + k] * h * (ti - r) * qi;
                    const REAL dbe = -rb[2 * n + k] * h * (-p[P_L] * mu[2 * n + k]) * qe;
                    /* d_v = kr max(ci, 0), d_i = kr max(cv, 0) */
                    if (ci[k] >= 0) gci += dbv * kr;
                    if (cv[k] >= 0) gcv += dbi * kr;
                    geta += (dbv * civ + dbi * cvv) * (REAL)2 * p[P_RS] * eta[k];
                    /* d_eta = L max(2 (f_s + f_v), 0) */
                    Local l;
                    local_terms(cv[k], ci[k], p, &l);
                    const REAL fv = (cv[k] - (REAL)1) * (cv[k] - (REAL)1) + ci[k] * ci[k];
                    const REAL x2 = (REAL)2 * (l.fs + fv);
                    gL += (double)dbe * (x2 > 0 ? x2 : (REAL)0);
                    if (x2 >= 0) {
                        const REAL xb = (REAL)2 * dbe * p[P_L]; /* adjoint of f_s and of f_v */
                        gcv += xb * (l.av + (REAL)2 * (cv[k] - (REAL)1));
                        gci += xb * (l.ai + (REAL)2 * ci[k]);
                        gEv += (double)xb * cv[k];
                        gEi += (double)xb * ci[k];
                        gT += (double)xb * l.ent;
                    }
                }
                sb[k] = ub[k] + gcv;
                sb[n + k] = ub[n + k] + gci;
                sb[2 * n + k] = ub[2 * n + k] + geta;
            }
        }
        /* pass 3: adjoint of the chemical potentials (local part and -kappa Laplacian) */
        for (int y = 0; y < H; ++y) {
            const int yn = y == 0 ? H - 1 : y - 1, ys = y == H - 1 ? 0 : y + 1;
            for (int x = 0; x < W; ++x) {
                const int xw = x == 0 ? W - 1 : x - 1, xe = x == W - 1 ? 0 : x + 1;
                const size_t k = IDX(y, x), ke = IDX(y, xe), kw = IDX(y, xw), ks = IDX(ys, x), kn = IDX(yn, x);
                const REAL c_v = cv[k], c_i = ci[k], e = eta[k];
                const REAL bv = mb[k], bi = mb[n + k], be = mb[2 * n + k];
                Local l;
                local_terms(c_v, c_i, p, &l);
                const REAL hh = (e - (REAL)1) * (e - (REAL)1), j = e * e;
                const REAL ts = p[P_T] * l.is;
                const REAL avv = p[P_T] * l.ivs + ts, avi = ts, aiv = ts, aii = p[P_T] * l.iis + ts;
                const REAL fv = (c_v - (REAL)1) * (c_v - (REAL)1) + c_i * c_i;
                REAL gcv = bv * (hh * avv + (REAL)2 * j) + bi * hh * aiv +
                           be * ((REAL)2 * (e - (REAL)1) * l.av + (REAL)4 * e * (c_v - (REAL)1));
                REAL gci = bv * hh * avi + bi * (hh * aii + (REAL)2 * j) +
                           be * ((REAL)2 * (e - (REAL)1) * l.ai + (REAL)4 * e * c_i);
                REAL geta = bv * ((REAL)2 * (e - (REAL)1) * l.av + (REAL)4 * e * (c_v - (REAL)1)) +
                            bi * ((REAL)2 * (e - (REAL)1) * l.ai + (REAL)4 * e * c_i) + be * (REAL)2 * (l.fs + fv);
                /* -kappa * Laplacian: self-adjoint on the periodic grid */
                const REAL lbv = (mb[ke] + mb[kw] + mb[ks] + mb[kn] - (REAL)4 * bv) * idx2;
                const REAL lbi = (mb[n + ke] + mb[n + kw] + mb[n + ks] + mb[n + kn] - (REAL)4 * bi) * idx2;
                const REAL lbe =
                    (mb[2 * n + ke] + mb[2 * n + kw] + mb[2 * n + ks] + mb[2 * n + kn] - (REAL)4 * be) * idx2;
                gcv -= p[P_KV] * lbv;
                gci -= p[P_KI] * lbi;
                geta -= p[P_KE] * lbe;
                sb[k] += gcv;
                sb[n + k] += gci;
                sb[2 * n + k] += geta;
                /* parameters: kappa (sum mubar * -lap), E and kBT through A and f_s */
                const REAL lv = (cv[ke] + cv[kw] + cv[ks] + cv[kn] - (REAL)4 * c_v) * idx2;
                const REAL li = (ci[ke] + ci[kw] + ci[ks] + ci[kn] - (REAL)4 * c_i) * idx2;
                const REAL le = (eta[ke] + eta[kw] + eta[ks] + eta[kn] - (REAL)4 * e) * idx2;
                gkv -= (double)bv * lv;
                gki -= (double)bi * li;
                gke -= (double)be * le;
                gEv += (double)bv * hh + (double)be * (REAL)2 * (e - (REAL)1) * c_v;
                gEi += (double)bi * hh + (double)be * (REAL)2 * (e - (REAL)1) * c_i;
                gT += (double)bv * hh * l.dvs + (double)bi * hh * l.dis + (double)be * (REAL)2 * (e - (REAL)1) * l.ent;
            }
        }
    }
    pbar[0] = gEv;
    pbar[1] = gEi;
    pbar[2] = gT;
    pbar[3] = gkv;
    pbar[4] = gki;
    pbar[5] = gke;
    pbar[6] = gDv;
    pbar[7] = gDi;
    pbar[8] = gL;
    free(buf);
    return 0;
}
