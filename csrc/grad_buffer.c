/* One contiguous buffer of the gradients a training step applies, for
 * data-parallel training (aslnet.distribution): the caller sums it across
 * processes in place (one MPI Allreduce) between the backward pass and the
 * optimizer update.
 *
 * Every weight of a trainable layer gets a slot, in layer order then
 * parameter order, each slot starting on a 64-byte boundary (the padding
 * stays zero).  The slots replace the per-parameter gradient arrays the
 * executor allocates (their values are kept), so backward writes straight
 * into the buffer.  Packing again after a change of the trainable layers
 * reallocates the buffer: a pointer from before is then stale. */
#include <string.h>

#include "internal.h"

#define SLOT_ALIGN 16    /* floats: 64 bytes */

static size_t padded(size_t count)
{
    return (count + SLOT_ALIGN - 1) / SLOT_ALIGN * SLOT_ALIGN;
}

static int wanted(const asl_layer *l, const asl_param *p)
{
    return l->trainable && p->is_weight;
}

int asl_grad_flat_owns(const asl_grad_flat *f, const float *grad)
{
    return f->buf && grad >= f->buf && grad < f->buf + f->count;
}

/* Whether the buffer already holds exactly the wanted slots. */
static int packed(const asl_grad_flat *f, const asl_layer *layers, int nlayers,
                  size_t *total)
{
    size_t off = 0;
    int same = f->buf != NULL;
    for (int i = 0; i < nlayers; i++) {
        const asl_layer *l = &layers[i];
        for (int j = 0; j < l->nparams; j++) {
            const asl_param *p = &l->p[j];
            if (wanted(l, p)) {
                if (p->grad != f->buf + off) same = 0;
                off += padded(p->size);
            } else if (asl_grad_flat_owns(f, p->grad)) {
                same = 0;                     /* a layer froze since */
            }
        }
    }
    *total = off;
    return same && off == f->count;
}

asl_status asl_grad_flat_pack(asl_grad_flat *f, asl_layer *layers, int nlayers,
                              asl_ctx *c)
{
    size_t total, off = 0;
    float *buf;
    if (packed(f, layers, nlayers, &total)) return ASL_OK;
    buf = asl_calloc((total ? total : 1) * sizeof(float));
    if (!buf)
        return asl_fail(c, ASL_ERR_NOMEM, "out of memory (gradient buffer of %zu floats)",
                        total);
    for (int i = 0; i < nlayers; i++) {
        asl_layer *l = &layers[i];
        for (int j = 0; j < l->nparams; j++) {
            asl_param *p = &l->p[j];
            if (!wanted(l, p)) {
                if (asl_grad_flat_owns(f, p->grad)) p->grad = NULL;  /* allocated again */
                continue;                                           /* when trainable */
            }
            if (p->grad) memcpy(buf + off, p->grad, p->size * sizeof(float));
            if (p->grad && !asl_grad_flat_owns(f, p->grad)) asl_free(p->grad);
            p->grad = buf + off;
            off += padded(p->size);
        }
    }
    asl_free(f->buf);
    f->buf = buf;
    f->count = total;
    return ASL_OK;
}

void asl_grad_flat_release(asl_grad_flat *f)
{
    asl_free(f->buf);
    f->buf = NULL;
    f->count = 0;
}
