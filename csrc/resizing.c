/*
 * resizing.c - Keras Resizing(height, width, interpolation,
 * crop_to_aspect_ratio) and CenterCrop(height, width): (h, w, c) ->
 * (target[0], target[1], c).  Deterministic, no parameters, no gradient
 * (they sit in front of the model: a backward asked for the input
 * gradient is refused).  OpenMP over output rows of the whole batch.
 *
 * Resizing follows tf.image.resize (what Keras 3 runs, antialias off):
 *   bilinear (half-pixel centres): src = (o + 0.5) * in / out - 0.5,
 *     lo = max(floor(src), 0), hi = min(ceil(src), in - 1),
 *     t = src - floor(src); rows first: top = a + (b - a) * tx, ...
 *   nearest: src = min(floor((o + 0.5) * in / out), in - 1).
 * crop_to_aspect_ratio first takes the centred crop of the target's
 * aspect ratio (Keras's rule: crop_h = clamp(int(w * th / tw), 1, h),
 * start = int((h - crop_h) / 2), likewise for w), then resizes it.
 *
 * CenterCrop (Keras 3): an input at least as large as the target in both
 * dimensions is cropped at start = (h - th) / 2 (integer division);
 * otherwise it is resized bilinearly with crop_to_aspect_ratio, as Keras.
 */
#include <math.h>
#include <string.h>

#include "internal.h"

typedef struct {
    int crop_t, crop_l, crop_h, crop_w;  /* region of the input resized */
    int copy;                            /* plain crop (no resampling)  */
} resize_priv;

static asl_status resize_init(asl_layer *l, asl_ctx *c)
{
    const char *kind = l->ops->name;
    const int h = l->in[0], w = l->in[1], th = l->d.target[0], tw = l->d.target[1];
    resize_priv *p;
    int crop = l->d.crop_to_aspect_ratio, copy = 0;

    if (h <= 0 || w <= 0 || l->in[2] <= 0)
        return asl_fail(c, ASL_ERR_SHAPE, "%s: bad input shape (%d, %d, %d)", kind, h, w,
                        l->in[2]);
    if (th < 1 || tw < 1)
        return asl_fail(c, ASL_ERR_ARG, "%s: height and width must be >= 1, got %d, %d",
                        kind, th, tw);
    if (l->d.interpolation != ASL_INTERP_BILINEAR && l->d.interpolation != ASL_INTERP_NEAREST)
        return asl_fail(c, ASL_ERR_ARG, "%s: unknown interpolation %d", kind,
                        (int)l->d.interpolation);
    if ((long long)th * tw * l->in[2] > 0x7fffffffLL)
        return asl_fail(c, ASL_ERR_SHAPE, "%s: output (%d, %d, %d) is too large", kind,
                        th, tw, l->in[2]);
    if (l->d.kind == ASL_LAYER_CENTER_CROP) {
        copy = h >= th && w >= tw;
        crop = !copy;
    }
    p = asl_calloc(sizeof *p);
    if (!p) return asl_fail(c, ASL_ERR_NOMEM, "%s: out of memory", kind);
    p->copy = copy;
    p->crop_t = p->crop_l = 0;
    p->crop_h = h;
    p->crop_w = w;
    if (copy) {
        p->crop_t = (h - th) / 2;
        p->crop_l = (w - tw) / 2;
        p->crop_h = th;
        p->crop_w = tw;
    } else if (crop) {
        int ch = (int)((float)((long long)w * th) / (float)tw);
        int cw = (int)((float)((long long)h * tw) / (float)th);
        ch = ch > h ? h : ch;
        cw = cw > w ? w : cw;
        p->crop_h = ch < 1 ? 1 : ch;
        p->crop_w = cw < 1 ? 1 : cw;
        p->crop_t = (int)((float)(h - p->crop_h) / 2.0f);
        p->crop_l = (int)((float)(w - p->crop_w) / 2.0f);
    }
    l->out[0] = th;
    l->out[1] = tw;
    l->out[2] = l->in[2];
    l->nparams = 0;
    l->priv = p;
    return ASL_OK;
}

static asl_status resize_plan(asl_layer *l, asl_ctx *c)
{
    (void)l;
    (void)c;
    return ASL_OK;
}

static asl_status resize_forward(asl_layer *l, asl_ctx *c, int training)
{
    const resize_priv *p = l->priv;
    const long long n = l->n, H = l->in[0], W = l->in[1], C = l->in[2];
    const long long th = l->out[0], tw = l->out[1];
    const int bilinear = l->d.kind == ASL_LAYER_CENTER_CROP ||
                         l->d.interpolation == ASL_INTERP_BILINEAR;
    const float sy = (float)p->crop_h / (float)th, sx = (float)p->crop_w / (float)tw;
    const float *x = l->x;
    float *y = l->y;

    (void)training;
    if (!p) return asl_fail(c, ASL_ERR_STATE, "%s: forward before init", l->ops->name);
#pragma omp parallel for collapse(2) schedule(static) if (n * th * tw * C >= (1 << 15))
    for (long long b = 0; b < n; b++) {
        for (long long oy = 0; oy < th; oy++) {
            const float *xb = x + b * H * W * C;
            float *yr = y + ((b * th + oy) * tw) * C;
            if (p->copy) {
                memcpy(yr, xb + ((p->crop_t + oy) * W + p->crop_l) * C,
                       (size_t)(tw * C) * sizeof(float));
                continue;
            }
            if (!bilinear) {
                long long iy = (long long)floorf(((float)oy + 0.5f) * sy);
                iy = iy > p->crop_h - 1 ? p->crop_h - 1 : iy;
                for (long long ox = 0; ox < tw; ox++) {
                    long long ix = (long long)floorf(((float)ox + 0.5f) * sx);
                    const float *s;
                    ix = ix > p->crop_w - 1 ? p->crop_w - 1 : ix;
                    s = xb + ((p->crop_t + iy) * W + p->crop_l + ix) * C;
                    memcpy(yr + ox * C, s, (size_t)C * sizeof(float));
                }
                continue;
            }
            {
                const float fy = ((float)oy + 0.5f) * sy - 0.5f, fly = floorf(fy);
                const float ty = fy - fly;
                long long y0 = (long long)fly, y1 = (long long)ceilf(fy);
                y0 = y0 < 0 ? 0 : y0;
                y1 = y1 > p->crop_h - 1 ? p->crop_h - 1 : y1;
                for (long long ox = 0; ox < tw; ox++) {
                    const float fx = ((float)ox + 0.5f) * sx - 0.5f, flx = floorf(fx);
                    const float tx = fx - flx;
                    long long x0 = (long long)flx, x1 = (long long)ceilf(fx);
                    const float *r0, *r1;
                    float *o = yr + ox * C;
                    x0 = x0 < 0 ? 0 : x0;
                    x1 = x1 > p->crop_w - 1 ? p->crop_w - 1 : x1;
                    r0 = xb + ((p->crop_t + y0) * W + p->crop_l) * C;
                    r1 = xb + ((p->crop_t + y1) * W + p->crop_l) * C;
#pragma omp simd
                    for (long long k = 0; k < C; k++) {
                        float a = r0[x0 * C + k], bb = r0[x1 * C + k];
                        float cc = r1[x0 * C + k], d = r1[x1 * C + k];
                        float top = a + (bb - a) * tx, bot = cc + (d - cc) * tx;
                        o[k] = top + (bot - top) * ty;
                    }
                }
            }
        }
    }
    return ASL_OK;
}

static asl_status resize_backward(asl_layer *l, asl_ctx *c, int training)
{
    (void)training;
    if (!l->dx) return ASL_OK;
    return asl_fail(c, ASL_ERR_STATE, "%s has no gradient: put it in front of the "
                    "layers that train (aslnet does not differentiate preprocessing)",
                    l->ops->name);
}

static void resize_release(asl_layer *l) { (void)l; }

static void resize_destroy(asl_layer *l)
{
    asl_free(l->priv);
    l->priv = NULL;
}

const asl_layer_ops asl_resizing_ops = {
    .name = "resizing",
    .alias = 0,
    .init = resize_init,
    .plan = resize_plan,
    .forward = resize_forward,
    .backward = resize_backward,
    .release = resize_release,
    .destroy = resize_destroy,
};

const asl_layer_ops asl_center_crop_ops = {
    .name = "center_crop",
    .alias = 0,
    .init = resize_init,
    .plan = resize_plan,
    .forward = resize_forward,
    .backward = resize_backward,
    .release = resize_release,
    .destroy = resize_destroy,
};
