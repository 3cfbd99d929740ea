/*
 * dropout.c - Keras Dropout (inverted dropout).
 *
 * Training (network training and rate > 0): each element is kept with
 * probability 1 - rate and scaled by 1 / (1 - rate), computed as TF does,
 * y = x * scale * mask (mask 0/1 as float); the keep mask is stored for
 * backward, dx = dy * scale * mask.  Inference, or rate 0:
 * identity.  Like Keras, the layer's trainable flag plays no part.
 *
 * Random numbers: splitmix64 on the per-layer state l->rng (seeded from
 * d.seed in init).  Element i of a forward uses output i + 1 of the
 * sequence, computed directly from the counter, so masks do not depend on
 * the thread count; the state then advances by the element count.
 */
#include <stdint.h>
#include <string.h>

#include "internal.h"

#define ASL_DROP_PAR ((size_t)1 << 15)
#define SPLITMIX_GAMMA 0x9E3779B97F4A7C15ULL

enum { DROP_NONE = 0, DROP_MASK, DROP_IDENTITY };

typedef struct {
    uint8_t *mask;   /* [n * size]: 1 = kept, of the last training forward */
    int mode;        /* DROP_* of the last forward                         */
} drop_priv;

static inline uint64_t splitmix_mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static size_t drop_count(const asl_layer *l)
{
    return (size_t)l->n * (size_t)l->in[0] * (size_t)l->in[1] *
           (size_t)l->in[2];
}

static asl_status drop_init(asl_layer *l, asl_ctx *c)
{
    if (l->in[0] <= 0 || l->in[1] <= 0 || l->in[2] <= 0)
        return asl_fail(c, ASL_ERR_SHAPE, "dropout: bad input shape (%d, %d, %d)",
                        l->in[0], l->in[1], l->in[2]);
    if (!(l->d.rate >= 0.0f && l->d.rate < 1.0f))
        return asl_fail(c, ASL_ERR_ARG, "dropout: rate must be in [0, 1) (got %g)",
                        (double)l->d.rate);
    memcpy(l->out, l->in, sizeof l->out);
    l->nparams = 0;
    l->rng = l->d.seed;
    l->priv = asl_calloc(sizeof(drop_priv));
    if (!l->priv) return asl_fail(c, ASL_ERR_NOMEM, "dropout: out of memory");
    return ASL_OK;
}

static void drop_release(asl_layer *l)
{
    drop_priv *p = l->priv;

    if (!p) return;
    asl_free(p->mask);
    p->mask = NULL;
    p->mode = DROP_NONE;
}

static void drop_destroy(asl_layer *l)
{
    drop_release(l);
    asl_free(l->priv);
    l->priv = NULL;
}

static asl_status drop_plan(asl_layer *l, asl_ctx *c)
{
    drop_priv *p = l->priv;

    if (!p) return asl_fail(c, ASL_ERR_STATE, "dropout: plan before init");
    drop_release(l);
    if (l->d.rate > 0.0f) {
        p->mask = asl_alloc(drop_count(l));
        if (!p->mask)
            return asl_fail(c, ASL_ERR_NOMEM,
                            "dropout: out of memory (mask of %d x %d x %d x %d)",
                            l->n, l->in[0], l->in[1], l->in[2]);
    }
    return ASL_OK;
}

static asl_status drop_forward(asl_layer *l, asl_ctx *c, int training)
{
    drop_priv *p = l->priv;
    const size_t count = drop_count(l);
    const long long nn = (long long)count;

    if (!p) return asl_fail(c, ASL_ERR_STATE, "dropout: forward before init");
    if (!training || l->d.rate <= 0.0f) {
        if (l->y != l->x) memcpy(l->y, l->x, count * sizeof(float));
        p->mode = DROP_IDENTITY;
        return ASL_OK;
    }
    if (!p->mask)
        return asl_fail(c, ASL_ERR_STATE, "dropout: forward before plan");
    {
        /* keep when the top 32 bits >= rate * 2^32: P(keep) = 1 - rate
         * (to 2^-32) */
        const uint64_t thr = (uint64_t)((double)l->d.rate * 4294967296.0);
        const float scale = 1.0f / (1.0f - l->d.rate);
        const uint64_t s0 = l->rng;
        const float *x = l->x;
        float *y = l->y;
        uint8_t *m = p->mask;

#pragma omp parallel for simd schedule(static) if (count >= ASL_DROP_PAR)
        for (long long i = 0; i < nn; i++) {
            uint64_t r = splitmix_mix(s0 + (uint64_t)(i + 1) * SPLITMIX_GAMMA);
            uint8_t keep = (r >> 32) >= thr;
            m[i] = keep;
            y[i] = x[i] * scale * (float)keep;
        }
        l->rng = s0 + (uint64_t)count * SPLITMIX_GAMMA;
    }
    p->mode = DROP_MASK;
    return ASL_OK;
}

static asl_status drop_backward(asl_layer *l, asl_ctx *c, int training)
{
    drop_priv *p = l->priv;
    const size_t count = drop_count(l);
    const long long nn = (long long)count;

    (void)training;   /* the mode of the last forward decides */
    if (!l->dx) return ASL_OK;
    if (!p || p->mode == DROP_NONE)
        return asl_fail(c, ASL_ERR_STATE, "dropout: backward without a forward");
    if (p->mode == DROP_IDENTITY) {
        if (l->dx != l->dy) memcpy(l->dx, l->dy, count * sizeof(float));
        return ASL_OK;
    }
    {
        const float scale = 1.0f / (1.0f - l->d.rate);
        const uint8_t *m = p->mask;
        const float *dy = l->dy;
        float *dx = l->dx;

#pragma omp parallel for simd schedule(static) if (count >= ASL_DROP_PAR)
        for (long long i = 0; i < nn; i++)
            dx[i] = dy[i] * scale * (float)m[i];
    }
    return ASL_OK;
}

const asl_layer_ops asl_dropout_ops = {
    .name = "dropout",
    .alias = 0,
    .init = drop_init,
    .plan = drop_plan,
    .forward = drop_forward,
    .backward = drop_backward,
    .release = drop_release,
    .destroy = drop_destroy,
};
