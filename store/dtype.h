/* store/dtype.h — element types of traind tensors and bf16 <-> fp32 conversion.
 *
 * bf16 is stored as uint16_t (the upper half of an IEEE fp32). Conversion to
 * bf16 rounds to nearest even, as CUDA's __float2bfloat16_rn does, and keeps
 * NaN a NaN; the CPU backend uses these to round exactly where the GPU does. */
#ifndef TRAIND_DTYPE_H
#define TRAIND_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef enum {
    DT_F32  = 0,
    DT_BF16 = 1,
    DT_U8   = 2,
    DT_I32  = 3,
} dtype_t;

typedef uint16_t bf16;

static inline size_t dtype_size(dtype_t dt) {
    switch (dt) {
    case DT_F32: case DT_I32: return 4;
    case DT_BF16: return 2;
    case DT_U8: return 1;
    }
    return 0;
}

static inline const char *dtype_name(dtype_t dt) {
    switch (dt) {
    case DT_F32: return "fp32";
    case DT_BF16: return "bf16";
    case DT_U8: return "u8";
    case DT_I32: return "i32";
    }
    return "?";
}

static inline float bf16_to_f32(bf16 h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline bf16 f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (bf16)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);                                        /* RNE */
    return (bf16)(u >> 16);
}

/* fp32 value rounded to the nearest bf16 and back: what a bf16 store does. */
static inline float bf16_round(float f) { return bf16_to_f32(f32_to_bf16(f)); }

#endif
