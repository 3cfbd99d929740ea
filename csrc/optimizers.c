/*
 * optimizers.c - Keras 3's optimizer updates (keras/src/optimizers/):
 * SGD, Adam (AdamW: Adam with weight decay; amsgrad), RMSprop, Adagrad and
 * Nadam, with Keras's weight decay and gradient clipping.  The executor
 * (net_train.c, asl_net_apply_gradients) owns the slots and the iteration
 * count; this file only computes.  Every loop is elementwise (and the
 * norms for clipping one-threaded), so results do not depend on the number
 * of threads.
 *
 * Order of one step, as Keras's BaseOptimizer.apply: clip the gradients
 * (clipnorm / global_clipnorm / clipvalue), decay the weights
 * (w -= w * weight_decay * lr), then the update rule.
 */
#include <math.h>
#include <string.h>

#include "internal.h"

/* Parameters smaller than this are updated by one thread. */
#define ASL_PAR_MIN (1 << 15)

static int finite_in(float v, float lo, float hi)
{
    return isfinite(v) && v >= lo && v <= hi;
}

asl_status asl_opt_check(asl_ctx *c, const asl_optimizer_desc *o)
{
    int clips;
    switch (o->kind) {
    case ASL_OPT_SGD: case ASL_OPT_ADAM: case ASL_OPT_RMSPROP:
    case ASL_OPT_ADAGRAD: case ASL_OPT_NADAM:
        break;
    default:
        return asl_fail(c, ASL_ERR_ARG, "unknown optimizer kind %d", (int)o->kind);
    }
    if (!(o->learning_rate >= 0.f) || !isfinite(o->learning_rate))
        return asl_fail(c, ASL_ERR_ARG, "learning_rate must be finite and >= 0");
    if (!finite_in(o->weight_decay, 0.f, INFINITY))
        return asl_fail(c, ASL_ERR_ARG, "weight_decay must be finite and >= 0");
    if (!finite_in(o->clipnorm, 0.f, INFINITY) || !finite_in(o->clipvalue, 0.f, INFINITY) ||
        !finite_in(o->global_clipnorm, 0.f, INFINITY))
        return asl_fail(c, ASL_ERR_ARG,
                        "clipnorm, clipvalue and global_clipnorm must be finite and > 0 "
                        "(0: off)");
    clips = (o->clipnorm > 0.f) + (o->clipvalue > 0.f) + (o->global_clipnorm > 0.f);
    if (clips > 1)
        return asl_fail(c, ASL_ERR_ARG,
                        "only one of clipnorm, clipvalue and global_clipnorm can be set");
    if ((o->kind == ASL_OPT_SGD || o->kind == ASL_OPT_RMSPROP) &&
        !finite_in(o->momentum, 0.f, 1.f))
        return asl_fail(c, ASL_ERR_ARG, "momentum must be in [0, 1]");
    if ((o->kind == ASL_OPT_ADAM || o->kind == ASL_OPT_NADAM) &&
        !(o->beta_1 >= 0.f && o->beta_1 < 1.f && o->beta_2 >= 0.f && o->beta_2 < 1.f))
        return asl_fail(c, ASL_ERR_ARG, "%s needs 0 <= beta_1, beta_2 < 1",
                        o->kind == ASL_OPT_ADAM ? "Adam" : "Nadam");
    if (o->kind == ASL_OPT_RMSPROP && !(o->rho >= 0.f && o->rho < 1.f))
        return asl_fail(c, ASL_ERR_ARG, "RMSprop needs 0 <= rho < 1");
    if (o->kind == ASL_OPT_ADAGRAD && !finite_in(o->initial_accumulator_value, 0.f, INFINITY))
        return asl_fail(c, ASL_ERR_ARG,
                        "Adagrad needs a finite initial_accumulator_value >= 0");
    if (o->kind != ASL_OPT_SGD && !(o->epsilon > 0.f && isfinite(o->epsilon)))
        return asl_fail(c, ASL_ERR_ARG, "optimizer needs a finite epsilon > 0");
    return ASL_OK;
}

int asl_opt_nslots(const asl_optimizer_desc *o)
{
    switch (o->kind) {
    case ASL_OPT_SGD: return o->momentum != 0.f;
    case ASL_OPT_ADAM: return 2 + (o->amsgrad != 0);
    case ASL_OPT_RMSPROP: return 1 + (o->momentum > 0.f) + (o->centered != 0);
    case ASL_OPT_ADAGRAD: return 1;
    case ASL_OPT_NADAM: return 2;
    }
    return 0;
}

float asl_opt_slot_init(const asl_optimizer_desc *o, int k)
{
    (void)k;
    return o->kind == ASL_OPT_ADAGRAD ? o->initial_accumulator_value : 0.f;
}

int asl_opt_global_norm(const asl_optimizer_desc *o)
{
    return o->global_clipnorm > 0.f;
}

/* One thread, so the sum (and the clipped step) is the same with any
 * number of threads; only clipping runs it. */
double asl_opt_sumsq(const float *g, size_t n)
{
    double s = 0.0;
    const long long m = (long long)n;
#pragma omp simd reduction(+ : s)
    for (long long i = 0; i < m; i++) s += (double)g[i] * g[i];
    return s;
}

/* 1 - 0.5 * 0.96^s is 1 in double from s = 1000 on (0.96^1000 < 2^-58). */
double asl_opt_u_product(double beta_1, int64_t t)
{
    double u = 1.0;
    int64_t head = t < 1000 ? t : 1000;
    for (int64_t s = 1; s <= head; s++) u *= beta_1 * (1.0 - 0.5 * pow(0.96, (double)s));
    if (t > head) u *= pow(beta_1, (double)(t - head));
    return u;
}

void asl_opt_begin(const asl_optimizer_desc *o, int64_t t, double sumsq,
                   asl_opt_step *s)
{
    double b1 = o->beta_1, b2 = o->beta_2, td = (double)t;
    memset(s, 0, sizeof *s);
    s->lr = o->learning_rate;
    s->wd_lr = o->weight_decay * o->learning_rate;
    s->scale = 1.f;
    if (o->global_clipnorm > 0.f) {
        /* Keras's clip_by_global_norm: clip * min(1 / norm, 1 / clip), and
         * NaN for a norm that is not finite (the weights then turn NaN). */
        double norm = sqrt(sumsq), clip = o->global_clipnorm;
        s->scale = isfinite(norm) ? (float)(clip * fmin(1.0 / norm, 1.0 / clip)) : NAN;
    }
    if (o->kind == ASL_OPT_ADAM)
        s->alpha = (float)(o->learning_rate * sqrt(1.0 - pow(b2, td)) / (1.0 - pow(b1, td)));
    if (o->kind == ASL_OPT_NADAM) {
        double u_t = b1 * (1.0 - 0.5 * pow(0.96, td));
        double u_t1 = b1 * (1.0 - 0.5 * pow(0.96, td + 1.0));
        double prod = asl_opt_u_product(b1, t);
        s->c_m = (float)(u_t1 / (1.0 - prod * u_t1));
        s->c_g = (float)((1.0 - u_t) / (1.0 - prod));
        s->c_v = (float)(1.0 / (1.0 - pow(b2, td)));
    }
}

/* The gradient as the update sees it: scaled (clipnorm, global_clipnorm)
 * or clamped (clipvalue; cv = 0: off). */
static inline float clip_g(float g, float scale, float cv)
{
    g *= scale;
    return cv > 0.f ? fminf(fmaxf(g, -cv), cv) : g;
}

static void sgd(const asl_optimizer_desc *o, const asl_opt_step *s, asl_param *p,
                float scale)
{
    float lr = s->lr, mom = o->momentum, cv = o->clipvalue;
    float *w = p->data, *m = p->slot[0];
    const float *gr = p->grad;
    const long long n = (long long)p->size;
    if (mom == 0.f) {
#pragma omp parallel for simd schedule(static) if (n >= ASL_PAR_MIN)
        for (long long i = 0; i < n; i++) w[i] -= clip_g(gr[i], scale, cv) * lr;
    } else if (o->nesterov) {
#pragma omp parallel for simd schedule(static) if (n >= ASL_PAR_MIN)
        for (long long i = 0; i < n; i++) {
            float g = clip_g(gr[i], scale, cv);
            m[i] = m[i] * mom - g * lr;
            w[i] += m[i] * mom - g * lr;
        }
    } else {
#pragma omp parallel for simd schedule(static) if (n >= ASL_PAR_MIN)
        for (long long i = 0; i < n; i++) {
            m[i] = m[i] * mom - clip_g(gr[i], scale, cv) * lr;
            w[i] += m[i];
        }
    }
}

/* m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2) [; v_hat = max(v_hat, v)];
 * w -= m alpha / (sqrt(v) + eps). */
static void adam(const asl_optimizer_desc *o, const asl_opt_step *s, asl_param *p,
                 float scale)
{
    float a = s->alpha, c1 = 1.f - o->beta_1, c2 = 1.f - o->beta_2, eps = o->epsilon;
    float cv = o->clipvalue;
    float *w = p->data, *m = p->slot[0], *v = p->slot[1], *vh = p->slot[2];
    const float *gr = p->grad;
    const long long n = (long long)p->size;
    if (o->amsgrad) {
#pragma omp parallel for simd schedule(static) if (n >= ASL_PAR_MIN)
        for (long long i = 0; i < n; i++) {
            float g = clip_g(gr[i], scale, cv);
            m[i] += (g - m[i]) * c1;
            v[i] += (g * g - v[i]) * c2;
            vh[i] = fmaxf(vh[i], v[i]);
            w[i] -= m[i] * a / (sqrtf(vh[i]) + eps);
        }
    } else {
#pragma omp parallel for simd schedule(static) if (n >= ASL_PAR_MIN)
        for (long long i = 0; i < n; i++) {
            float g = clip_g(gr[i], scale, cv);
            m[i] += (g - m[i]) * c1;
            v[i] += (g * g - v[i]) * c2;
            w[i] -= m[i] * a / (sqrtf(v[i]) + eps);
        }
    }
}

/* v = rho v + (1 - rho) g^2; centered: a = rho a + (1 - rho) g,
 * den = v - a^2 + eps, else den = v + eps; inc = lr g / sqrt(den);
 * momentum: m = mom m + inc, w -= m; else w -= inc. */
static void rmsprop(const asl_optimizer_desc *o, const asl_opt_step *s, asl_param *p,
                    float scale)
{
    float lr = s->lr, rho = o->rho, c = 1.f - o->rho, eps = o->epsilon, mom = o->momentum;
    float cv = o->clipvalue;
    int has_m = mom > 0.f;
    float *w = p->data, *v = p->slot[0], *m = has_m ? p->slot[1] : NULL;
    float *ag = o->centered ? p->slot[has_m ? 2 : 1] : NULL;
    const float *gr = p->grad;
    const long long n = (long long)p->size;
#pragma omp parallel for schedule(static) if (n >= ASL_PAR_MIN)
    for (long long i = 0; i < n; i++) {
        float g = clip_g(gr[i], scale, cv), den, inc;
        v[i] = rho * v[i] + c * (g * g);
        if (ag) {
            ag[i] = rho * ag[i] + c * g;
            den = v[i] - ag[i] * ag[i] + eps;
        } else {
            den = v[i] + eps;
        }
        inc = lr * g / sqrtf(den);
        if (m) {
            m[i] = mom * m[i] + inc;
            w[i] -= m[i];
        } else {
            w[i] -= inc;
        }
    }
}

/* acc += g^2; w -= lr g / sqrt(acc + eps). */
static void adagrad(const asl_optimizer_desc *o, const asl_opt_step *s, asl_param *p,
                    float scale)
{
    float lr = s->lr, eps = o->epsilon, cv = o->clipvalue;
    float *w = p->data, *acc = p->slot[0];
    const float *gr = p->grad;
    const long long n = (long long)p->size;
#pragma omp parallel for simd schedule(static) if (n >= ASL_PAR_MIN)
    for (long long i = 0; i < n; i++) {
        float g = clip_g(gr[i], scale, cv);
        acc[i] += g * g;
        w[i] -= lr * g / sqrtf(acc[i] + eps);
    }
}

/* m, v as Adam; m_hat = c_m m + c_g g, v_hat = c_v v;
 * w -= m_hat lr / (sqrt(v_hat) + eps). */
static void nadam(const asl_optimizer_desc *o, const asl_opt_step *s, asl_param *p,
                  float scale)
{
    float lr = s->lr, c1 = 1.f - o->beta_1, c2 = 1.f - o->beta_2, eps = o->epsilon;
    float cm = s->c_m, cg = s->c_g, cvv = s->c_v, cv = o->clipvalue;
    float *w = p->data, *m = p->slot[0], *v = p->slot[1];
    const float *gr = p->grad;
    const long long n = (long long)p->size;
#pragma omp parallel for simd schedule(static) if (n >= ASL_PAR_MIN)
    for (long long i = 0; i < n; i++) {
        float g = clip_g(gr[i], scale, cv);
        m[i] += (g - m[i]) * c1;
        v[i] += (g * g - v[i]) * c2;
        w[i] -= (cm * m[i] + cg * g) * lr / (sqrtf(cvv * v[i]) + eps);
    }
}

void asl_opt_update(const asl_optimizer_desc *o, const asl_opt_step *s, asl_param *p)
{
    float scale = s->scale;
    if (o->clipnorm > 0.f) {
        /* Keras's _clip_by_norm: g clip / max(norm, clip) (norm 0: g). */
        double norm = sqrt(asl_opt_sumsq(p->grad, p->size)), clip = o->clipnorm;
        scale = (float)(clip / fmax(norm, clip));
        if (norm != norm) scale = NAN;
    }
    if (s->wd_lr != 0.f) {
        float d = s->wd_lr, *w = p->data;
        const long long n = (long long)p->size;
#pragma omp parallel for simd schedule(static) if (n >= ASL_PAR_MIN)
        for (long long i = 0; i < n; i++) w[i] -= w[i] * d;
    }
    switch (o->kind) {
    case ASL_OPT_SGD: sgd(o, s, p, scale); break;
    case ASL_OPT_ADAM: adam(o, s, p, scale); break;
    case ASL_OPT_RMSPROP: rmsprop(o, s, p, scale); break;
    case ASL_OPT_ADAGRAD: adagrad(o, s, p, scale); break;
    case ASL_OPT_NADAM: nadam(o, s, p, scale); break;
    }
}
