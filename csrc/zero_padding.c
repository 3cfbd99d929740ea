/*
 * zero_padding.c - Keras ZeroPadding2D on NHWC: d.pad = top, bottom, left,
 * right.  Forward writes x into the middle of the padded output and zeros
 * around it; backward crops dy back into dx.  Plain C, one output row per
 * iteration (threaded above ASL_PAD_PAR floats).
 */
#include <string.h>

#include "internal.h"

#define ASL_PAD_PAR ((size_t)1 << 15)

static asl_status pad_init(asl_layer *l, asl_ctx *c)
{
    const int *p = l->d.pad;
    long long oh, ow;

    if (l->in[0] <= 0 || l->in[1] <= 0 || l->in[2] <= 0)
        return asl_fail(c, ASL_ERR_SHAPE,
                        "zero_padding2d: bad input shape (%d, %d, %d)",
                        l->in[0], l->in[1], l->in[2]);
    if (p[0] < 0 || p[1] < 0 || p[2] < 0 || p[3] < 0)
        return asl_fail(c, ASL_ERR_ARG,
                        "zero_padding2d: negative padding ((%d, %d), (%d, %d))",
                        p[0], p[1], p[2], p[3]);
    oh = (long long)l->in[0] + p[0] + p[1];
    ow = (long long)l->in[1] + p[2] + p[3];
    if (oh > 0x7fffffffLL || ow > 0x7fffffffLL)
        return asl_fail(c, ASL_ERR_SHAPE,
                        "zero_padding2d: padded shape too large");
    l->out[0] = (int)oh;
    l->out[1] = (int)ow;
    l->out[2] = l->in[2];
    l->nparams = 0;
    return ASL_OK;
}

static asl_status pad_plan(asl_layer *l, asl_ctx *c)
{
    (void)l;
    (void)c;
    return ASL_OK;
}

static asl_status pad_forward(asl_layer *l, asl_ctx *c, int training)
{
    const long long n = l->n, ih = l->in[0], iw = l->in[1], ch = l->in[2];
    const long long oh = l->out[0], ow = l->out[1];
    const long long top = l->d.pad[0], left = l->d.pad[2];
    const long long right = l->d.pad[3];
    const size_t total = (size_t)(n * oh * ow * ch);

    (void)c;
    (void)training;
#pragma omp parallel for collapse(2) schedule(static) if (total >= ASL_PAD_PAR)
    for (long long b = 0; b < n; b++) {
        for (long long r = 0; r < oh; r++) {
            float *yr = l->y + (b * oh + r) * ow * ch;
            long long xr = r - top;
            if (xr < 0 || xr >= ih) {
                memset(yr, 0, (size_t)(ow * ch) * sizeof(float));
                continue;
            }
            if (left) memset(yr, 0, (size_t)(left * ch) * sizeof(float));
            memcpy(yr + left * ch, l->x + (b * ih + xr) * iw * ch,
                   (size_t)(iw * ch) * sizeof(float));
            if (right)
                memset(yr + (left + iw) * ch, 0,
                       (size_t)(right * ch) * sizeof(float));
        }
    }
    return ASL_OK;
}

static asl_status pad_backward(asl_layer *l, asl_ctx *c, int training)
{
    const long long n = l->n, ih = l->in[0], iw = l->in[1], ch = l->in[2];
    const long long oh = l->out[0], ow = l->out[1];
    const long long top = l->d.pad[0], left = l->d.pad[2];
    const size_t total = (size_t)(n * ih * iw * ch);

    (void)c;
    (void)training;
    if (!l->dx) return ASL_OK;
#pragma omp parallel for collapse(2) schedule(static) if (total >= ASL_PAD_PAR)
    for (long long b = 0; b < n; b++) {
        for (long long r = 0; r < ih; r++) {
            memcpy(l->dx + (b * ih + r) * iw * ch,
                   l->dy + ((b * oh + r + top) * ow + left) * ch,
                   (size_t)(iw * ch) * sizeof(float));
        }
    }
    return ASL_OK;
}

static void pad_release(asl_layer *l) { (void)l; }

const asl_layer_ops asl_zero_padding2d_ops = {
    .name = "zero_padding2d",
    .alias = 0,
    .init = pad_init,
    .plan = pad_plan,
    .forward = pad_forward,
    .backward = pad_backward,
    .release = pad_release,
    .destroy = pad_release,
};
