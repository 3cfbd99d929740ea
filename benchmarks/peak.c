/* This machine's arithmetic peak, measured: independent FMA chains in registers.
 *
 *     peak THREADS MILLISECONDS RUNS
 *
 * prints one JSON object: for each kernel the CPU can run, the GFLOP/s of RUNS runs of
 * about MILLISECONDS each, THREADS threads running the same kernel at once:
 *
 *   fp32_avx512  vfmadd (zmm, 16 float lanes): 2 FLOP per lane
 *   fp32_avx2    vfmadd (ymm, 8 float lanes, FMA3): 2 FLOP per lane
 *   bf16_avx512  vdpbf16ps (zmm, AVX512_BF16): per float lane 2 bf16 products summed into
 *                the float accumulator: 4 FLOP per lane (oneDNN and vendors count so)
 *   bf16_amx     tdpbf16ps (AMX tiles, AMX_BF16): a 16x16 float tile += a 16x32 by a 32x16
 *                bf16 tile, 2 * 16 * 16 * 32 FLOP; four accumulator tiles fed by two A and
 *                two B tiles, as oneDNN's AMX kernels block them.  Where the CPU has AMX,
 *                oneDNN runs bf16 (and int8) convolutions on it, so this, not vdpbf16ps, is
 *                the bf16 ceiling.  Linux grants the tile state on request
 *                (arch_prctl ARCH_REQ_XCOMP_PERM); where it refuses, the kernel is skipped
 *                and the output says why.
 *
 * Each kernel keeps ACC independent accumulators (a = a * m + c, or a += x.y): enough
 * chains to cover the FMA latency (4-6 cycles) times the number of FMA ports (2), so the
 * loop is throughput-bound, not latency-bound.  Nothing is read from memory in the loop.
 * Kernels are compiled with __attribute__((target)) and chosen at run time with
 * __builtin_cpu_supports, so one build runs on any x86-64 CPU.  Threads: POSIX threads
 * released together by a barrier.  Two figures per run:
 *
 *   gflops_wall  all threads' FLOP over the wall time from the first thread's start to the
 *                last thread's end: what the cores gave this program, lower when other
 *                processes share them;
 *   gflops_cpu   the sum over the threads of FLOP / the thread's own CPU time: the rate of
 *                THREADS cores while they run the kernel, which time slices taken by other
 *                processes do not lower (two threads on SMT siblings of one core share its
 *                FMA units while both run, so that stays right too).
 *
 * Run by benchmarks/peak.py (compiled there with the system cc).
 */
#define _GNU_SOURCE   /* syscall (arch_prctl for AMX), and POSIX */
#include <immintrin.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define ACC 16          /* accumulators: zmm kernels (32 registers) */
#define ACC_YMM 12      /* accumulators: ymm kernel (16 registers, 2 for the operands) */
#define MAX_THREADS 1024

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

#define REP16(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) \
                 X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15)
#define REP12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)

/* a = a * 0.999999 + 1e-7 converges to 0.1 and stays there: no overflow, no denormals. */
__attribute__((target("avx512f")))
static float fp32_avx512(long iters)
{
#define DECL(i) __m512 a##i = _mm512_set1_ps(0.1f + 0.001f * (i));
#define STEP(i) a##i = _mm512_fmadd_ps(a##i, m, c);
#define SUM(i) s = _mm512_add_ps(s, a##i);
    const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
    REP16(DECL)
    for (long n = 0; n < iters; n++) {
        REP16(STEP)
    }
    __m512 s = _mm512_setzero_ps();
    REP16(SUM)
    return _mm512_reduce_add_ps(s);
#undef DECL
#undef STEP
#undef SUM
}

__attribute__((target("avx2,fma")))
static float fp32_avx2(long iters)
{
#define DECL(i) __m256 a##i = _mm256_set1_ps(0.1f + 0.001f * (i));
#define STEP(i) a##i = _mm256_fmadd_ps(a##i, m, c);
#define SUM(i) s = _mm256_add_ps(s, a##i);
    const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    REP12(DECL)
    for (long n = 0; n < iters; n++) {
        REP12(STEP)
    }
    __m256 s = _mm256_setzero_ps();
    REP12(SUM)
    float out[8];
    _mm256_storeu_ps(out, s);
    return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
#undef DECL
#undef STEP
#undef SUM
}

/* acc += 1.0 * 2^-24 twice per iteration and lane: a run of 1e9 iterations adds ~120. */
__attribute__((target("avx512f,avx512bf16")))
static float bf16_avx512(long iters)
{
#define DECL(i) __m512 a##i = _mm512_set1_ps(0.001f * (i));
#define STEP(i) a##i = _mm512_dpbf16_ps(a##i, x, y);
#define SUM(i) s = _mm512_add_ps(s, a##i);
    const __m512bh x = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1.0f), _mm512_set1_ps(1.0f));
    const __m512bh y = _mm512_cvtne2ps_pbh(_mm512_set1_ps(0x1p-24f), _mm512_set1_ps(0x1p-24f));
    REP16(DECL)
    for (long n = 0; n < iters; n++) {
        REP16(STEP)
    }
    __m512 s = _mm512_setzero_ps();
    REP16(SUM)
    return _mm512_reduce_add_ps(s);
#undef DECL
#undef STEP
#undef SUM
}

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11 && defined(SYS_arch_prctl)
#define HAVE_AMX 1
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

typedef struct {
    unsigned char palette_id, start_row, reserved[14];
    unsigned short colsb[16];
    unsigned char rows[16];
} tile_config;

/* 0, or the errno of the refused request for the AMX tile state */
static int amx_permit(void)
{
    return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0 ? 0 : errno;
}

__attribute__((target("amx-tile,amx-bf16")))
static float bf16_amx(long iters)
{
    tile_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette_id = 1;
    for (int t = 0; t < 8; t++) {        /* every tile 16 rows of 64 bytes */
        cfg.rows[t] = 16;
        cfg.colsb[t] = 64;
    }
    _Alignas(64) unsigned short a[512], b[512];
    _Alignas(64) float c[256];
    for (int i = 0; i < 512; i++) {
        a[i] = 0x3f80;                     /* bf16 1.0 */
        b[i] = 0x3380;                     /* bf16 2^-24 */
    }
    _tile_loadconfig(&cfg);
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    _tile_loadd(4, a, 64);
    _tile_loadd(5, a, 64);
    _tile_loadd(6, b, 64);
    _tile_loadd(7, b, 64);
    for (long i = 0; i < iters; i++) {
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    float s = 0.0f;
    _tile_stored(0, c, 64);
    for (int i = 0; i < 256; i++) s += c[i];
    _tile_stored(3, c, 64);
    for (int i = 0; i < 256; i++) s += c[i];
    _tile_release();
    return s;
}
#endif

typedef struct {
    const char *name;
    float (*fn)(long);
    double flop_per_iter;
    int supported;
} kernel;

typedef struct {
    pthread_barrier_t *barrier;
    float (*fn)(long);
    long iters;
    double start, end;             /* wall clock */
    double cpu;                    /* this thread's CPU time for the kernel */
    float sink;
    int err;
} job;

static void *worker(void *arg)
{
    job *j = arg;
    int rc = pthread_barrier_wait(j->barrier);
    if (rc != 0 && rc != PTHREAD_BARRIER_SERIAL_THREAD) {
        j->err = rc;
        return NULL;
    }
    struct timespec c0, c1;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0) != 0) {
        j->err = errno;
        return NULL;
    }
    j->start = now();
    j->sink = j->fn(j->iters);
    j->end = now();
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1) != 0) {
        j->err = errno;
        return NULL;
    }
    j->cpu = (double)(c1.tv_sec - c0.tv_sec) + 1e-9 * (double)(c1.tv_nsec - c0.tv_nsec);
    return NULL;
}

typedef struct {
    double wall;       /* seconds from the first thread's start to the last one's end */
    double inv_cpu;    /* sum over the threads of 1 / (the thread's CPU seconds) */
    float sink;
} timing;

/* `threads` threads each run fn(iters); 0, or -1 on error (message on stderr). */
static int timed_run(float (*fn)(long), long iters, int threads, timing *out)
{
    pthread_t tid[MAX_THREADS];
    job jobs[MAX_THREADS];
    pthread_barrier_t barrier;
    int rc = pthread_barrier_init(&barrier, NULL, (unsigned)threads);
    if (rc != 0) {
        fprintf(stderr, "peak: pthread_barrier_init: %s\n", strerror(rc));
        return -1;
    }
    int status = -1;
    for (int i = 0; i < threads; i++) {
        jobs[i] = (job){.barrier = &barrier, .fn = fn, .iters = iters};
        if (i == 0)
            continue;                      /* thread 0 is this one */
        rc = pthread_create(&tid[i], NULL, worker, &jobs[i]);
        if (rc != 0) {
            /* the threads already started wait at the barrier for `threads` threads
               and can't be released: end the program (the caller sees the status) */
            fprintf(stderr, "peak: pthread_create: %s\n", strerror(rc));
            exit(1);
        }
    }
    worker(&jobs[0]);
    for (int i = 1; i < threads; i++) {
        rc = pthread_join(tid[i], NULL);
        if (rc != 0) {
            fprintf(stderr, "peak: pthread_join: %s\n", strerror(rc));
            exit(1);                       /* a thread may still use `barrier` */
        }
    }
    double first = jobs[0].start, last = jobs[0].end;
    *out = (timing){0};
    for (int i = 0; i < threads; i++) {
        if (jobs[i].err) {
            fprintf(stderr, "peak: thread %d: %s\n", i, strerror(jobs[i].err));
            goto cleanup;
        }
        if (jobs[i].cpu <= 0.0) {
            fprintf(stderr, "peak: thread %d: no CPU time measured\n", i);
            goto cleanup;
        }
        first = jobs[i].start < first ? jobs[i].start : first;
        last = jobs[i].end > last ? jobs[i].end : last;
        out->inv_cpu += 1.0 / jobs[i].cpu;
        out->sink += jobs[i].sink;
    }
    out->wall = last - first;
    status = out->wall > 0.0 ? 0 : -1;
    if (status)
        fprintf(stderr, "peak: no wall time measured\n");
cleanup:
    rc = pthread_barrier_destroy(&barrier);
    if (rc != 0) {
        fprintf(stderr, "peak: pthread_barrier_destroy: %s\n", strerror(rc));
        return -1;
    }
    return status;
}

static int parse_int(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    long threads, ms, runs;
    if (argc != 4 || parse_int(argv[1], 1, MAX_THREADS, &threads)
        || parse_int(argv[2], 1, 60000, &ms) || parse_int(argv[3], 1, 1000, &runs)) {
        fprintf(stderr, "usage: %s THREADS(1-%d) MILLISECONDS(1-60000) RUNS(1-1000)\n",
                argv[0], MAX_THREADS);
        return 2;
    }
    __builtin_cpu_init();
    kernel kernels[] = {
        {"fp32_avx512", fp32_avx512, ACC * 16 * 2.0, __builtin_cpu_supports("avx512f")},
        {"fp32_avx2", fp32_avx2, ACC_YMM * 8 * 2.0,
         __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")},
        {"bf16_avx512", bf16_avx512, ACC * 16 * 4.0,
         __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16")},
#ifdef HAVE_AMX
        {"bf16_amx", bf16_amx, 4 * 2.0 * 16 * 16 * 32, __builtin_cpu_supports("amx-bf16")},
#endif
    };
    const int nk = (int)(sizeof kernels / sizeof kernels[0]);
    float sink = 0.0f;
    timing t;
    printf("{\"threads\": %ld, ", threads);
#ifdef HAVE_AMX
    if (kernels[nk - 1].supported) {
        int e = amx_permit();
        if (e) {
            kernels[nk - 1].supported = 0;
            printf("\"amx\": \"the kernel refused the AMX tile state: %s\", ", strerror(e));
        }
    }
#endif
    printf("\"kernels\": {");
    int first = 1;
    for (int k = 0; k < nk; k++) {
        if (!kernels[k].supported)
            continue;
        /* calibrate on one thread: double the iterations until a call takes >= 20 ms */
        long iters = 1000;
        for (;;) {
            if (timed_run(kernels[k].fn, iters, 1, &t))
                return 1;
            sink += t.sink;
            if (t.wall >= 0.02 || iters > (1L << 40))
                break;
            iters *= 2;
        }
        iters = (long)((double)iters * ((double)ms * 1e-3) / t.wall) + 1;
        double gflop = kernels[k].flop_per_iter * (double)iters * 1e-9;   /* per thread */
        double wall[1000], cpu[1000];
        for (long r = 0; r < runs; r++) {
            if (timed_run(kernels[k].fn, iters, (int)threads, &t))
                return 1;
            sink += t.sink;
            wall[r] = gflop * (double)threads / t.wall;
            cpu[r] = gflop * t.inv_cpu;
        }
        printf("%s\"%s\": {\"iters\": %ld, \"gflops_wall\": [", first ? "" : ", ",
               kernels[k].name, iters);
        first = 0;
        for (long r = 0; r < runs; r++)
            printf("%s%.2f", r ? ", " : "", wall[r]);
        printf("], \"gflops_cpu\": [");
        for (long r = 0; r < runs; r++)
            printf("%s%.2f", r ? ", " : "", cpu[r]);
        printf("]}");
    }
    /* the results of the chains, so that no compiler can drop them */
    printf("}, \"checksum\": %.6g}\n", (double)sink);
    if (fflush(stdout) != 0) {
        perror("peak: stdout");
        return 1;
    }
    return 0;
}
