/*
 * augment.c - the random augmentation layers of Keras 3 that tutorials put
 * in front of a base model: RandomFlip, RandomRotation / RandomZoom /
 * RandomTranslation (one kind, random_affine: each Keras layer sets its own
 * ranges) and RandomContrast.  Shape-preserving, no parameters.
 *
 * Active only in a training forward; an inference forward copies x.  No
 * gradient: a backward asked for the input gradient is refused (they sit in
 * front of the model).  Their training forward draws random numbers, so the
 * executor keeps their output (ops.random) and never recomputes it.
 *
 * Random numbers: splitmix64 on l->rng (seeded from d.seed in init, as
 * dropout.c).  A forward draws each sample's parameters in sample order
 * (draw k = output k + 1 of the sequence), then the state advances; the
 * images are then transformed in parallel (OpenMP over samples), so results
 * do not depend on the thread count.  uniform(lo, hi) = lo + (hi - lo) * u,
 * u = the top 24 bits / 2^24 in [0, 1).
 *
 * Keras 3's rules (keras/src/layers/preprocessing/image_preprocessing):
 *  flip: u <= 0.5 flips (horizontal, vertical, or both with the same draw).
 *  affine: per sample, angle = 2 pi uniform(rotation), zoom_h = 1 +
 *    uniform(zoom[0..1]), zoom_w = 1 + uniform(zoom[2..3]) (or zoom_h),
 *    dy = H uniform(shift[0..1]), dx = W uniform(shift[2..3]); an output
 *    pixel (x, y) samples the input at (x', y'), with cx = (W - 1) / 2,
 *    cy = (H - 1) / 2:
 *      rotation:    x' = cx + cos a (x - cx) - sin a (y - cy),
 *                   y' = cy + sin a (x - cx) + cos a (y - cy)
 *      zoom:        x' = cx + zoom_w (x - cx), y' = cy + zoom_h (y - cy)
 *      translation: x' = x - dx, y' = y - dy
 *    (composed in that order: rotation of the zoomed, shifted grid), as
 *    TF's ImageProjectiveTransformV3 samples (Keras 3's affine_transform):
 *    the coordinate first mapped by fill_mode (reflect: dcba|abcd|dcba,
 *    wrap, nearest: clamp; constant: unchanged), then bilinear from the
 *    four neighbours (a neighbour outside the image reads fill_value) or
 *    nearest (rounded half away from zero).
 *  contrast: per sample f = uniform(1 - c0, 1 + c1); per channel the mean
 *    m over the image; y = clip((x - m) f + m, value_range).
 */
#include <math.h>
#include <string.h>

#include "internal.h"

#define SPLITMIX_GAMMA 0x9E3779B97F4A7C15ULL
#define TWO_PI 6.283185307179586

typedef struct {
    float *t;        /* per sample: parameters of the last draw (cap n) */
    int cap;
    float *fill;     /* [c]: fill_value, what a point outside the image reads */
} aug_priv;

static inline uint64_t splitmix_mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* The next uniform in [0, 1) of l's sequence. */
static double next_u(asl_layer *l)
{
    l->rng += SPLITMIX_GAMMA;
    return (double)(splitmix_mix(l->rng) >> 40) * (1.0 / 16777216.0);
}

static double uniform(asl_layer *l, float lo, float hi)
{
    return (double)lo + ((double)hi - (double)lo) * next_u(l);
}

static size_t count_of(const asl_layer *l)
{
    return (size_t)l->n * (size_t)l->in[0] * (size_t)l->in[1] * (size_t)l->in[2];
}

static int bad_range(const float *r)
{
    return !(r[0] == r[0]) || !(r[1] == r[1]) || r[0] > r[1];
}

static asl_status aug_init(asl_layer *l, asl_ctx *c)
{
    const char *kind = l->ops->name;
    const asl_layer_desc *d = &l->d;

    if (l->in[0] <= 0 || l->in[1] <= 0 || l->in[2] <= 0)
        return asl_fail(c, ASL_ERR_SHAPE, "%s: bad input shape (%d, %d, %d)", kind,
                        l->in[0], l->in[1], l->in[2]);
    switch (d->kind) {
    case ASL_LAYER_RANDOM_FLIP:
        if (d->flip < 1 || d->flip > 3)
            return asl_fail(c, ASL_ERR_ARG, "%s: flip must be 1 (horizontal), 2 (vertical) "
                            "or 3 (both), got %d", kind, d->flip);
        break;
    case ASL_LAYER_RANDOM_AFFINE:
        if (bad_range(d->rotation) || bad_range(d->zoom) || bad_range(d->zoom + 2) ||
            bad_range(d->shift) || bad_range(d->shift + 2))
            return asl_fail(c, ASL_ERR_ARG, "%s: each range must be (lower, upper) with "
                            "lower <= upper", kind);
        if (d->zoom[0] <= -1.0f || (!d->zoom_w_same && d->zoom[2] <= -1.0f))
            return asl_fail(c, ASL_ERR_ARG, "%s: zoom factors must be > -1", kind);
        if (d->interpolation != ASL_INTERP_BILINEAR && d->interpolation != ASL_INTERP_NEAREST)
            return asl_fail(c, ASL_ERR_ARG, "%s: unknown interpolation %d", kind,
                            (int)d->interpolation);
        if (d->fill_mode < ASL_FILL_REFLECT || d->fill_mode > ASL_FILL_NEAREST)
            return asl_fail(c, ASL_ERR_ARG, "%s: unknown fill_mode %d", kind,
                            (int)d->fill_mode);
        break;
    case ASL_LAYER_RANDOM_CONTRAST:
        if (bad_range(d->value_range) || !(d->contrast[0] >= 0.0f && d->contrast[0] <= 1.0f) ||
            !(d->contrast[1] >= 0.0f))
            return asl_fail(c, ASL_ERR_ARG, "%s: factor must be in [0, 1] (lower) and >= 0 "
                            "(upper), value_range (low, high)", kind);
        break;
    default:
        return asl_fail(c, ASL_ERR_ARG, "%s: not an augmentation kind", kind);
    }
    memcpy(l->out, l->in, sizeof l->out);
    l->nparams = 0;
    l->rng = d->seed;
    l->priv = asl_calloc(sizeof(aug_priv));
    if (!l->priv) return asl_fail(c, ASL_ERR_NOMEM, "%s: out of memory", kind);
    return ASL_OK;
}

static void aug_release(asl_layer *l)
{
    aug_priv *p = l->priv;
    if (!p) return;
    asl_free(p->t);
    asl_free(p->fill);
    p->t = p->fill = NULL;
    p->cap = 0;
}

static void aug_destroy(asl_layer *l)
{
    aug_release(l);
    asl_free(l->priv);
    l->priv = NULL;
}

static asl_status aug_plan(asl_layer *l, asl_ctx *c)
{
    aug_priv *p = l->priv;
    if (!p) return asl_fail(c, ASL_ERR_STATE, "%s: plan before init", l->ops->name);
    aug_release(l);
    p->t = asl_alloc((size_t)l->n * 6 * sizeof(float));
    p->fill = asl_alloc((size_t)l->in[2] * sizeof(float));
    if (!p->t || !p->fill) {
        aug_release(l);
        return asl_fail(c, ASL_ERR_NOMEM, "%s: out of memory", l->ops->name);
    }
    for (int k = 0; k < l->in[2]; k++) p->fill[k] = l->d.fill_value;
    p->cap = l->n;
    return ASL_OK;
}

/* ---- fill modes (TF's MapCoordinate) ----------------------------------- */

static inline float map_coord(float v, long long len, asl_fill_mode m)
{
    switch (m) {
    case ASL_FILL_REFLECT:
        if (v < 0.0f) {
            if (len <= 1) v = 0.0f;
            else {
                const long long sz2 = 2 * len;
                if (v < (float)sz2) v = (float)(sz2 * (long long)(-v / (float)sz2)) + v;
                v = v < (float)-len ? v + (float)sz2 : -v - 1.0f;
            }
        } else if (v > (float)(len - 1)) {
            if (len <= 1) v = 0.0f;
            else {
                const long long sz2 = 2 * len;
                v -= (float)(sz2 * (long long)(v / (float)sz2));
                if (v >= (float)len) v = (float)sz2 - v - 1.0f;
            }
        }
        break;
    case ASL_FILL_WRAP:
        if (v < 0.0f) {
            if (len <= 1) v = 0.0f;
            else v += (float)(len * ((long long)(-v / (float)(len - 1)) + 1));
        } else if (v > (float)(len - 1)) {
            if (len <= 1) v = 0.0f;
            else v -= (float)(len * (long long)(v / (float)(len - 1)));
        }
        break;
    case ASL_FILL_NEAREST:
        break;
    case ASL_FILL_CONSTANT:
    default:
        return v;
    }
    return v < 0.0f ? 0.0f : (v > (float)(len - 1) ? (float)(len - 1) : v);
}

/* out[C] = the input (H, W, C) sampled at (fx, fy); fill: C copies of
 * fill_value (a neighbour outside the image reads it). */
static inline void sample(const float *xb, long long H, long long W, long long C, float fx,
                          float fy, int nearest, const float *fill, float *out)
{
    if (fx != fx || fy != fy) {
        memcpy(out, fill, (size_t)C * sizeof(float));
        return;
    }
    if (nearest) {
        long long ix = (long long)roundf(fx), iy = (long long)roundf(fy);
        const float *s = (ix < 0 || iy < 0 || ix >= W || iy >= H) ? fill
                                                                   : xb + (iy * W + ix) * C;
        memcpy(out, s, (size_t)C * sizeof(float));
        return;
    }
    {
        const float x0f = floorf(fx), y0f = floorf(fy);
        const float x1f = x0f + 1.0f, y1f = y0f + 1.0f;
        const float wx0 = x1f - fx, wx1 = fx - x0f, wy0 = y1f - fy, wy1 = fy - y0f;
        const long long x0 = (long long)x0f, y0 = (long long)y0f, x1 = x0 + 1, y1 = y0 + 1;
        const int ox0 = x0 >= 0 && x0 < W, ox1 = x1 >= 0 && x1 < W;
        const int oy0 = y0 >= 0 && y0 < H, oy1 = y1 >= 0 && y1 < H;
        const float *p00 = oy0 && ox0 ? xb + (y0 * W + x0) * C : fill;
        const float *p01 = oy0 && ox1 ? xb + (y0 * W + x1) * C : fill;
        const float *p10 = oy1 && ox0 ? xb + (y1 * W + x0) * C : fill;
        const float *p11 = oy1 && ox1 ? xb + (y1 * W + x1) * C : fill;
        /* TF's order: rows first, then between them */
#pragma omp simd
        for (long long k = 0; k < C; k++)
            out[k] = wy0 * (wx0 * p00[k] + wx1 * p01[k]) + wy1 * (wx0 * p10[k] + wx1 * p11[k]);
    }
}

/* ---- forward ---------------------------------------------------------- */

static void draw(asl_layer *l, float *t)
{
    const asl_layer_desc *d = &l->d;
    const double H = l->in[0], W = l->in[1];

    for (int s = 0; s < l->n; s++, t += 6) {
        if (d->kind == ASL_LAYER_RANDOM_FLIP || d->kind == ASL_LAYER_RANDOM_CONTRAST) {
            t[0] = d->kind == ASL_LAYER_RANDOM_FLIP
                       ? (float)(next_u(l) <= 0.5)
                       : (float)uniform(l, 1.0f - d->contrast[0], 1.0f + d->contrast[1]);
            continue;
        }
        {
            /* Only the groups with a non-empty range draw (a Keras layer
             * draws only its own). */
            const int rot = d->rotation[0] != 0.0f || d->rotation[1] != 0.0f;
            const int zh = d->zoom[0] != 0.0f || d->zoom[1] != 0.0f;
            const int zw = !d->zoom_w_same && (d->zoom[2] != 0.0f || d->zoom[3] != 0.0f);
            const int sh = d->shift[0] != 0.0f || d->shift[1] != 0.0f;
            const int sw = d->shift[2] != 0.0f || d->shift[3] != 0.0f;
            const double a = rot ? TWO_PI * uniform(l, d->rotation[0], d->rotation[1]) : 0.0;
            const double zy = zh ? 1.0 + uniform(l, d->zoom[0], d->zoom[1]) : 1.0;
            const double zx = d->zoom_w_same ? zy
                              : zw ? 1.0 + uniform(l, d->zoom[2], d->zoom[3]) : 1.0;
            const double dy = sh ? H * uniform(l, d->shift[0], d->shift[1]) : 0.0;
            const double dx = sw ? W * uniform(l, d->shift[2], d->shift[3]) : 0.0;
            const double cx = (W - 1.0) / 2.0, cy = (H - 1.0) / 2.0;
            const double co = cos(a), si = sin(a);
            /* in = R(Z(out - shift - c)) + c, as (a0 a1 a2; b0 b1 b2) */
            t[0] = (float)(co * zx);
            t[1] = (float)(-si * zy);
            t[3] = (float)(si * zx);
            t[4] = (float)(co * zy);
            t[2] = (float)(cx - t[0] * (cx + dx) - t[1] * (cy + dy));
            t[5] = (float)(cy - t[3] * (cx + dx) - t[4] * (cy + dy));
        }
    }
}

static asl_status aug_forward(asl_layer *l, asl_ctx *c, int training)
{
    aug_priv *p = l->priv;
    const asl_layer_desc *d = &l->d;
    const long long n = l->n, H = l->in[0], W = l->in[1], C = l->in[2];
    const long long hwc = H * W * C;
    const float *x = l->x;
    float *y = l->y;

    if (!training) {
        if (y != x) memcpy(y, x, count_of(l) * sizeof(float));
        return ASL_OK;
    }
    if (!p || !p->t || p->cap < l->n)
        return asl_fail(c, ASL_ERR_STATE, "%s: forward before plan", l->ops->name);
    draw(l, p->t);
#pragma omp parallel for schedule(dynamic, 1) if (count_of(l) >= (1 << 15) && n > 1)
    for (long long b = 0; b < n; b++) {
        const float *t = p->t + b * 6, *xb = x + b * hwc;
        float *yb = y + b * hwc;
        if (d->kind == ASL_LAYER_RANDOM_FLIP) {
            const int fh = t[0] != 0.0f && (d->flip & 1), fv = t[0] != 0.0f && (d->flip & 2);
            for (long long r = 0; r < H; r++) {
                const float *src = xb + (fv ? H - 1 - r : r) * W * C;
                float *dst = yb + r * W * C;
                if (!fh) {
                    memcpy(dst, src, (size_t)(W * C) * sizeof(float));
                    continue;
                }
                for (long long q = 0; q < W; q++)
                    memcpy(dst + q * C, src + (W - 1 - q) * C, (size_t)C * sizeof(float));
            }
        } else if (d->kind == ASL_LAYER_RANDOM_CONTRAST) {
            const float f = t[0], lo = d->value_range[0], hi = d->value_range[1];
            float mean[64];
            for (long long k0 = 0; k0 < C; k0 += 64) {
                const long long kn = C - k0 < 64 ? C - k0 : 64;
                double acc[64] = {0};
                for (long long s = 0; s < H * W; s++)
                    for (long long k = 0; k < kn; k++) acc[k] += xb[s * C + k0 + k];
                for (long long k = 0; k < kn; k++) mean[k] = (float)(acc[k] / (double)(H * W));
                for (long long s = 0; s < H * W; s++)
                    for (long long k = 0; k < kn; k++) {
                        float v = (xb[s * C + k0 + k] - mean[k]) * f + mean[k];
                        yb[s * C + k0 + k] = v < lo ? lo : (v > hi ? hi : v);
                    }
            }
        } else {
            const int nearest = d->interpolation == ASL_INTERP_NEAREST;
            const asl_fill_mode fm = d->fill_mode;
            for (long long r = 0; r < H; r++)
                for (long long q = 0; q < W; q++) {
                    float fx = t[0] * (float)q + t[1] * (float)r + t[2];
                    float fy = t[3] * (float)q + t[4] * (float)r + t[5];
                    if (fx < 0.0f || fx > (float)(W - 1)) fx = map_coord(fx, W, fm);
                    if (fy < 0.0f || fy > (float)(H - 1)) fy = map_coord(fy, H, fm);
                    sample(xb, H, W, C, fx, fy, nearest, p->fill, yb + (r * W + q) * C);
                }
        }
    }
    return ASL_OK;
}

static asl_status aug_backward(asl_layer *l, asl_ctx *c, int training)
{
    (void)training;
    if (!l->dx) return ASL_OK;
    return asl_fail(c, ASL_ERR_STATE, "%s has no gradient: put it in front of the layers "
                    "that train (aslnet does not differentiate augmentation)", l->ops->name);
}

#define AUG_OPS(sym, nm)                                                    \
    const asl_layer_ops sym = {                                            \
        .name = nm, .alias = 0, .random = 1, .init = aug_init,             \
        .plan = aug_plan, .forward = aug_forward, .backward = aug_backward, \
        .release = aug_release, .destroy = aug_destroy,                    \
    }

AUG_OPS(asl_random_flip_ops, "random_flip");
AUG_OPS(asl_random_affine_ops, "random_affine");
AUG_OPS(asl_random_contrast_ops, "random_contrast");
