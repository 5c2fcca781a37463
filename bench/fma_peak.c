/* One core's fp32 FMA peak with AVX-512: 12 independent chains of _mm512_fmadd_ps (16 lanes x 2 FLOP each).
 * The ceiling for any fp32 network on this CPU (see "Why the ResNet-18 latency goals cannot be met" in README.md).
 *
 *     gcc -O2 -mavx512f -o /tmp/fma_peak bench/fma_peak.c && /tmp/fma_peak
 */
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec*1e-9; }

int main(void) {
    __m512 a[12], b = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++) a[i] = _mm512_set1_ps((float)i);
    long n = 200000000/12;
    double t = now();
    for (long k = 0; k < n; k++) {
        #pragma GCC unroll 12
        for (int i = 0; i < 12; i++) a[i] = _mm512_fmadd_ps(a[i], b, c);
    }
    t = now() - t;
    float s = 0;  /* use the results, so that the compiler keeps the loop */
    for (int i = 0; i < 12; i++) s += _mm512_reduce_add_ps(a[i]);
    printf("AVX-512 FMA peak, 1 thread: %.0f GFLOP/s (checksum %g)\n", n*12.0*16*2/t/1e9, s);
    return 0;
}
