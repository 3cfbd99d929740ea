/* common.c - errors, memory, oneDNN and BLAS helpers shared by all layers. */
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include "internal.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#ifdef ASL_SCIPY_OPENBLAS
#include <cblas.h>
#define ASL_CBLAS_SGEMM scipy_cblas_sgemm
#else
#include <cblas.h>
#define ASL_CBLAS_SGEMM cblas_sgemm
#endif

asl_status asl_fail(asl_ctx *c, asl_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
    return st;
}

const char *asl_dnnl_str(dnnl_status_t s)
{
    switch (s) {
    case dnnl_success: return "success";
    case dnnl_out_of_memory: return "out of memory";
    case dnnl_invalid_arguments: return "invalid arguments";
    case dnnl_unimplemented: return "unimplemented";
    case dnnl_last_impl_reached: return "no implementation";
    case dnnl_runtime_error: return "runtime error";
    case dnnl_not_required: return "not required";
    default: return "unknown error";
    }
}

void *asl_alloc(size_t bytes)
{
    if (bytes == 0) bytes = 64;
    if (bytes > SIZE_MAX - 63) return NULL;
    return aligned_alloc(64, (bytes + 63) / 64 * 64);
}

void *asl_calloc(size_t bytes)
{
    void *p = asl_alloc(bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

void asl_free(void *p) { free(p); }

asl_status asl_md_nhwc(asl_ctx *c, dnnl_memory_desc_t *md, int n, int h,
                       int w, int ch)
{
    dnnl_dims_t dims = {n, ch, h, w};
    ASL_DNNL(c, dnnl_memory_desc_create_with_tag(md, 4, dims, dnnl_f32,
                                                 dnnl_nhwc));
    return ASL_OK;
}

asl_status asl_prim_create(asl_ctx *c, asl_prim *p,
                           const_dnnl_primitive_desc_t pd)
{
    const_dnnl_memory_desc_t smd;
    size_t bytes;

    p->prim = NULL;
    p->scratch = NULL;
    ASL_DNNL(c, dnnl_primitive_create(&p->prim, pd));
    smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    bytes = smd ? dnnl_memory_desc_get_size(smd) : 0;
    if (bytes > 0) {
        dnnl_status_t s = dnnl_memory_create(&p->scratch, smd, c->engine,
                                             DNNL_MEMORY_NONE);
        if (s != dnnl_success) {
            dnnl_primitive_destroy(p->prim);
            p->prim = NULL;
            return asl_fail(c, ASL_ERR_DNNL, "oneDNN: scratchpad memory: %s",
                            asl_dnnl_str(s));
        }
        if (bytes > c->scratch_size) {   /* grow the one shared scratchpad */
            void *grown = asl_alloc(bytes);
            if (!grown) {
                asl_prim_destroy(p);
                return asl_fail(c, ASL_ERR_NOMEM,
                                "out of memory (scratchpad of %zu bytes)", bytes);
            }
            asl_free(c->scratch);
            c->scratch = grown;
            c->scratch_size = bytes;
        }
    }
    return ASL_OK;
}

asl_status asl_prim_exec(asl_ctx *c, asl_prim *p, int nargs,
                         dnnl_exec_arg_t *args)
{
    dnnl_exec_arg_t all[ASL_MAX_ARGS + 1];

    if (nargs > ASL_MAX_ARGS)
        return asl_fail(c, ASL_ERR_ARG, "internal: too many primitive args");
    memcpy(all, args, sizeof(*args) * (size_t)nargs);
    if (p->scratch) {
        ASL_DNNL(c, dnnl_memory_set_data_handle(p->scratch, c->scratch));
        all[nargs].arg = DNNL_ARG_SCRATCHPAD;
        all[nargs].memory = p->scratch;
        nargs++;
    }
    ASL_DNNL(c, dnnl_primitive_execute(p->prim, c->stream, nargs, all));
    ASL_DNNL(c, dnnl_stream_wait(c->stream));
    return ASL_OK;
}

void asl_prim_destroy(asl_prim *p)
{
    if (p->prim) dnnl_primitive_destroy(p->prim);
    if (p->scratch) dnnl_memory_destroy(p->scratch);
    p->prim = NULL;
    p->scratch = NULL;
}

asl_status asl_mem_create(asl_ctx *c, dnnl_memory_t *m,
                          const_dnnl_memory_desc_t md)
{
    ASL_DNNL(c, dnnl_memory_create(m, md, c->engine, DNNL_MEMORY_NONE));
    return ASL_OK;
}

asl_status asl_mem_bind(asl_ctx *c, dnnl_memory_t m, const void *data)
{
    ASL_DNNL(c, dnnl_memory_set_data_handle(m, (void *)data));
    return ASL_OK;
}

static asl_status make_reorder(asl_ctx *c, asl_prim *p,
                               const_dnnl_memory_desc_t from,
                               const_dnnl_memory_desc_t to)
{
    dnnl_primitive_desc_t pd = NULL;
    asl_status st;

    ASL_DNNL(c, dnnl_reorder_primitive_desc_create(&pd, from, c->engine, to,
                                                   c->engine, c->attr));
    st = asl_prim_create(c, p, pd);
    dnnl_primitive_desc_destroy(pd);
    return st;
}

asl_status asl_wmem_init(asl_ctx *c, asl_wmem *w,
                         const_dnnl_memory_desc_t user_md,
                         const_dnnl_memory_desc_t prim_md, int need_back)
{
    asl_status st = ASL_OK;
    size_t bytes;

    memset(w, 0, sizeof *w);
    w->version = UINT64_MAX;
    w->same = dnnl_memory_desc_equal(user_md, prim_md);
    ASL_TRY(asl_mem_create(c, &w->user, user_md));
    if (w->same) return ASL_OK;

    bytes = dnnl_memory_desc_get_size(prim_md);
    w->prim_buf = asl_alloc(bytes);
    if (!w->prim_buf) {
        st = asl_fail(c, ASL_ERR_NOMEM, "out of memory (%zu bytes of weights)",
                      bytes);
        goto error;
    }
    ASL_DNNL_GOTO(c, st, dnnl_memory_create(&w->prim, prim_md, c->engine,
                                            w->prim_buf), error);
    st = make_reorder(c, &w->reorder, user_md, prim_md);
    if (st != ASL_OK) goto error;
    if (need_back) {
        st = make_reorder(c, &w->reorder_back, prim_md, user_md);
        if (st != ASL_OK) goto error;
    }
    return ASL_OK;
error:
    asl_wmem_destroy(w);
    return st;
}

asl_status asl_wmem_get(asl_ctx *c, asl_wmem *w, const float *data,
                        uint64_t version, dnnl_memory_t *out)
{
    ASL_TRY(asl_mem_bind(c, w->user, data));
    if (w->same) {
        *out = w->user;
        return ASL_OK;
    }
    if (w->version != version) {
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, w->user},
                                   {DNNL_ARG_TO, w->prim}};
        ASL_TRY(asl_prim_exec(c, &w->reorder, 2, args));
        w->version = version;
    }
    *out = w->prim;
    return ASL_OK;
}

void asl_wmem_destroy(asl_wmem *w)
{
    asl_prim_destroy(&w->reorder);
    asl_prim_destroy(&w->reorder_back);
    if (w->prim) dnnl_memory_destroy(w->prim);
    if (w->user) dnnl_memory_destroy(w->user);
    asl_free(w->prim_buf);
    memset(w, 0, sizeof *w);
}

/* C = alpha op(A) op(B) + beta C, row-major, on OpenBLAS.
 *
 * OpenBLAS runs single-threaded (net_apply_threads in net_exec.c sets its thread
 * count to 1): its own pthread pool spins for a while after each call, and
 * beside the OpenMP team that runs oneDNN it oversubscribed the cores (a
 * 1x1280x1000 head at batch 1 cost MobileNetV2 two thirds of its pass).  A
 * product big enough to share is split here across the OpenMP team instead,
 * by rows of C (or by columns when C has fewer rows than columns), one
 * single-threaded OpenBLAS call per thread; each element of C is still
 * computed by one call over all of k. */
#define ASL_SGEMM_SPLIT (1 << 20)   /* multiply-adds worth sharing */

static void sgemm1(int trans_a, int trans_b, int m, int n, int k, float alpha,
                   const float *a, int lda, const float *b, int ldb, float beta,
                   float *cm, int ldc)
{
    ASL_CBLAS_SGEMM(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                    trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a,
                    lda, b, ldb, beta, cm, ldc);
}

void asl_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha,
               const float *a, int lda, const float *b, int ldb, float beta,
               float *cm, int ldc)
{
#ifdef _OPENMP
    const int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
    const int rows = m >= n, len = rows ? m : n;
    const int parts = nt < len ? nt : len;

    if (parts > 1 && (double)m * n * k >= ASL_SGEMM_SPLIT) {
#pragma omp parallel for num_threads(parts) schedule(static, 1)
        for (int t = 0; t < parts; t++) {
            const int lo = (int)((long long)len * t / parts);
            const int hi = (int)((long long)len * (t + 1) / parts);
            if (rows)   /* rows lo..hi of op(A) and of C */
                sgemm1(trans_a, trans_b, hi - lo, n, k, alpha,
                       trans_a ? a + lo : a + (size_t)lo * lda, lda, b, ldb, beta,
                       cm + (size_t)lo * ldc, ldc);
            else        /* columns lo..hi of op(B) and of C */
                sgemm1(trans_a, trans_b, m, hi - lo, k, alpha, a, lda,
                       trans_b ? b + (size_t)lo * ldb : b + lo, ldb, beta, cm + lo, ldc);
        }
        return;
    }
#endif
    sgemm1(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, cm, ldc);
}

void asl_col_sums(const float *a, int rows, int cols, float *out)
{
    memset(out, 0, (size_t)cols * sizeof(float));
    for (int i = 0; i < rows; i++) {
        const float *row = a + (size_t)i * cols;
        for (int j = 0; j < cols; j++) out[j] += row[j];
    }
}

asl_status asl_param_declare(asl_ctx *c, asl_layer *l, int j,
                             const char *name, int is_weight, int ndim,
                             const int *dims)
{
    asl_param *p;
    size_t size = 1;

    if (j < 0 || j >= ASL_MAX_PARAMS || ndim < 1 || ndim > 4)
        return asl_fail(c, ASL_ERR_ARG, "internal: bad param declaration");
    p = &l->p[j];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = ndim;
    for (int i = 0; i < ndim; i++) {
        if (dims[i] <= 0)
            return asl_fail(c, ASL_ERR_SHAPE, "%s: %s has a zero dimension",
                            l->ops->name, name);
        p->dims[i] = dims[i];
        size *= (size_t)dims[i];
    }
    p->size = size;
    p->is_weight = is_weight;
    p->own = asl_calloc(size * sizeof(float));
    if (!p->own)
        return asl_fail(c, ASL_ERR_NOMEM, "out of memory (%s of %s: %zu floats)",
                        name, l->ops->name, size);
    p->data = p->own;
    if (j + 1 > l->nparams) l->nparams = j + 1;
    return ASL_OK;
}

/* ---- bfloat16 ------------------------------------------------------- */

void asl_to_bf16(const float *x, uint16_t *y, size_t count)
{
    const long long nn = (long long)count;
#pragma omp parallel for schedule(static) if (nn >= (1 << 16))
    for (long long i = 0; i < nn; i++) {
        uint32_t u;
        memcpy(&u, &x[i], sizeof u);
        if ((u & 0x7fffffffu) > 0x7f800000u)          /* NaN: keep it quiet */
            y[i] = (uint16_t)((u >> 16) | 0x40u);
        else                                           /* nearest, ties even */
            y[i] = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    }
}

void asl_from_bf16(const uint16_t *x, float *y, size_t count)
{
    const long long nn = (long long)count;
#pragma omp parallel for schedule(static) if (nn >= (1 << 16))
    for (long long i = 0; i < nn; i++) {
        uint32_t u = (uint32_t)x[i] << 16;
        memcpy(&y[i], &u, sizeof u);
    }
}

asl_status asl_round_bf16(asl_ctx *c, uint16_t **buf, size_t *cap,
                          const float *x, size_t count)
{
    if (*cap < count) {
        asl_free(*buf);
        *buf = asl_alloc(count * sizeof **buf);
        *cap = *buf ? count : 0;
        if (!*buf)
            return asl_fail(c, ASL_ERR_NOMEM, "out of memory (bfloat16 copy of "
                            "%zu values)", count);
    }
    asl_to_bf16(x, *buf, count);
    return ASL_OK;
}

int asl_pd_is_ref(const_dnnl_primitive_desc_t pd)
{
    const char *impl = NULL;
    return dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) !=
               dnnl_success || !impl || strncmp(impl, "ref", 3) == 0;
}

int asl_bf16_supported(void)
{
    /* oneDNN's ISA values are bit sets: every ISA from avx512_core_bf16 on
     * (amx, fp16) contains its bits */
    const unsigned want = (unsigned)dnnl_cpu_isa_avx512_core_bf16;
    return ((unsigned)dnnl_get_effective_cpu_isa() & want) == want;
}
