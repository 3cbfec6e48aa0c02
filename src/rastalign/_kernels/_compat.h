/* Portability of the C kernels: restrict, and on x86-64 Linux with GCC a second build of each hot function
 * for AVX2, picked at load time (target_clones). The same operations in the same order in every build, and
 * no contraction into fused multiply-adds (-ffp-contract=off), so the same bits on every machine. */
#ifndef RASTALIGN_COMPAT_H
#define RASTALIGN_COMPAT_H
#if defined(_MSC_VER)
#define RA_RESTRICT __restrict
#else
#define RA_RESTRICT __restrict__
#endif
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define RA_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define RA_CLONES
#endif
#endif
