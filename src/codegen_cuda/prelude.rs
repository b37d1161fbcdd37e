//! The device helper functions emitted before a kernel: loopforge's arithmetic where C's
//! differs (see `te::arith`). Only the helpers a kernel uses are emitted.
//!
//! - `lf_floordiv_*` / `lf_floormod_*`: floor division and modulo on `int` and
//!   `long long`, 0 for a zero divisor, `MIN / -1` wrapping to `MIN` (C's `/` and `%`
//!   truncate, and divide by zero or overflow undefinedly);
//! - `lf_fmin_*` / `lf_fmax_*`: float minimum and maximum that propagate NaN and order
//!   `-0.0` below `+0.0` (CUDA's `fminf` returns the other operand for a NaN);
//! - `lf_add_i32` / `lf_sub_i32` / `lf_mul_i32`: `int` arithmetic that wraps (signed
//!   overflow is undefined in C++ and NVVM optimizes on it);
//! - `lf_f16_to_f32` / `lf_f32_to_f16` (PTX `cvt.f32.f16` / `cvt.rn.f16.f32` on a 16-bit
//!   register: no header is needed) and `lf_bf16_to_f32` / `lf_f32_to_bf16` (bit
//!   manipulation: a shift, and round to nearest even on the bits with NaN kept NaN, as
//!   the `half` crate does): a half lives in memory as its bits (`unsigned short`) and in
//!   expressions as the `float` of its value; `lf_round_f16` / `lf_round_bf16` round a
//!   `float` to the half type and back, after every operation on halves. The conversions
//!   are opaque to the compiler (inline assembly, integer operations), so a half
//!   `a * b + c` is never contracted into an FMA;
//! - `lf_cp_async16` / `lf_cp_async_wait`: an asynchronous 16-byte copy from global to
//!   shared memory (PTX `cp.async.cg`, compute capability 8.0 and up; a plain copy
//!   below), and the wait for every copy the thread issued, put before each barrier.

/// One helper function of the prelude.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Helper {
    /// The `float` value of `float16` bits. (The conversions come first: the set of helpers
    /// is emitted in this order, and the rounding helpers call them.)
    F16ToF32,
    /// The `float16` bits nearest to a `float` (ties to even).
    F32ToF16,
    /// The `float` value of `bfloat16` bits.
    Bf16ToF32,
    /// The `bfloat16` bits nearest to a `float` (ties to even, NaN stays NaN).
    F32ToBf16,
    /// A `float` rounded to `float16` and back.
    RoundF16,
    /// A `float` rounded to `bfloat16` and back.
    RoundBf16,
    /// Wrapping `int` addition.
    AddI32,
    /// Wrapping `int` subtraction.
    SubI32,
    /// Wrapping `int` multiplication.
    MulI32,
    /// Floor division on `int`.
    FloorDivI32,
    /// Floor modulo on `int`.
    FloorModI32,
    /// Floor division on `long long`.
    FloorDivI64,
    /// Floor modulo on `long long`.
    FloorModI64,
    /// NaN-propagating `float` minimum.
    FminF32,
    /// NaN-propagating `float` maximum.
    FmaxF32,
    /// NaN-propagating `double` minimum.
    FminF64,
    /// NaN-propagating `double` maximum.
    FmaxF64,
    /// Asynchronous 16-byte copy from global to shared memory.
    CpAsync16,
    /// Wait for the thread's asynchronous copies.
    CpAsyncWait,
}

impl Helper {
    /// The function's name in the generated code.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Helper::F16ToF32 => "lf_f16_to_f32",
            Helper::F32ToF16 => "lf_f32_to_f16",
            Helper::Bf16ToF32 => "lf_bf16_to_f32",
            Helper::F32ToBf16 => "lf_f32_to_bf16",
            Helper::RoundF16 => "lf_round_f16",
            Helper::RoundBf16 => "lf_round_bf16",
            Helper::AddI32 => "lf_add_i32",
            Helper::SubI32 => "lf_sub_i32",
            Helper::MulI32 => "lf_mul_i32",
            Helper::FloorDivI32 => "lf_floordiv_i32",
            Helper::FloorModI32 => "lf_floormod_i32",
            Helper::FloorDivI64 => "lf_floordiv_i64",
            Helper::FloorModI64 => "lf_floormod_i64",
            Helper::FminF32 => "lf_fmin_f32",
            Helper::FmaxF32 => "lf_fmax_f32",
            Helper::FminF64 => "lf_fmin_f64",
            Helper::FmaxF64 => "lf_fmax_f64",
            Helper::CpAsync16 => "lf_cp_async16",
            Helper::CpAsyncWait => "lf_cp_async_wait",
        }
    }

    /// The helpers this one calls (they must be emitted before it).
    pub(crate) fn deps(self) -> &'static [Helper] {
        match self {
            Helper::RoundF16 => &[Helper::F16ToF32, Helper::F32ToF16],
            Helper::RoundBf16 => &[Helper::Bf16ToF32, Helper::F32ToBf16],
            _ => &[],
        }
    }

    /// The function's definition.
    pub(crate) fn definition(self) -> String {
        const H: &str = "__device__ __forceinline__";
        let wrap = |op: &str| {
            format!(
                "{H} int {}(int a, int b) {{ return (int)((unsigned)a {op} (unsigned)b); }}\n",
                self.name()
            )
        };
        let floordiv = |t: &str, ut: &str| {
            format!(
                "{H} {t} {}({t} a, {t} b) {{\n  if (b == 0) return 0;\n  if (b == -1) return ({t})(({ut})0 - ({ut})a);\n  {t} q = a / b;\n  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;\n}}\n",
                self.name()
            )
        };
        let floormod = |t: &str| {
            format!(
                "{H} {t} {}({t} a, {t} b) {{\n  if (b == 0 || b == -1) return 0;\n  {t} r = a % b;\n  return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r;\n}}\n",
                self.name()
            )
        };
        // A NaN operand makes `x + y` NaN. Ties (equal values, or zeros of either sign):
        // min prefers the negative zero, max the positive one.
        let minmax = |t: &str, cmp: &str, tie: &str| {
            format!(
                "{H} {t} {}({t} x, {t} y) {{\n  if (x != x || y != y) return x + y;\n  if (x {cmp} y) return x;\n  if (y {cmp} x) return y;\n  return {tie};\n}}\n",
                self.name()
            )
        };
        let n = self.name();
        match self {
            Helper::F16ToF32 => format!(
                "{H} float {n}(unsigned short h) {{\n  float f;\n  asm(\"cvt.f32.f16 %0, %1;\" : \"=f\"(f) : \"h\"(h));\n  return f;\n}}\n"
            ),
            Helper::F32ToF16 => format!(
                "{H} unsigned short {n}(float f) {{\n  unsigned short h;\n  asm(\"cvt.rn.f16.f32 %0, %1;\" : \"=h\"(h) : \"f\"(f));\n  return h;\n}}\n"
            ),
            Helper::Bf16ToF32 => format!(
                "{H} float {n}(unsigned short h) {{\n  unsigned int x = (unsigned int)h;\n  if ((x & 0x7fffu) > 0x7f80u) x |= 0x0040u;\n  return __uint_as_float(x << 16);\n}}\n"
            ),
            Helper::F32ToBf16 => format!(
                "{H} unsigned short {n}(float f) {{\n  unsigned int x = __float_as_uint(f);\n  if ((x & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((x >> 16) | 0x0040u);\n  return (unsigned short)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);\n}}\n"
            ),
            Helper::RoundF16 => format!(
                "{H} float {n}(float f) {{ return lf_f16_to_f32(lf_f32_to_f16(f)); }}\n"
            ),
            Helper::RoundBf16 => format!(
                "{H} float {n}(float f) {{ return lf_bf16_to_f32(lf_f32_to_bf16(f)); }}\n"
            ),
            Helper::AddI32 => wrap("+"),
            Helper::SubI32 => wrap("-"),
            Helper::MulI32 => wrap("*"),
            Helper::FloorDivI32 => floordiv("int", "unsigned"),
            Helper::FloorModI32 => floormod("int"),
            Helper::FloorDivI64 => floordiv("long long", "unsigned long long"),
            Helper::FloorModI64 => floormod("long long"),
            Helper::FminF32 => minmax("float", "<", "signbit(x) ? x : y"),
            Helper::FmaxF32 => minmax("float", ">", "signbit(x) ? y : x"),
            Helper::FminF64 => minmax("double", "<", "signbit(x) ? x : y"),
            Helper::FmaxF64 => minmax("double", ">", "signbit(x) ? y : x"),
            Helper::CpAsync16 => format!(
                "{H} void {n}(void* dst, const void* src) {{\n#if __CUDA_ARCH__ >= 800\n  unsigned long long s;\n  asm(\"cvta.to.shared.u64 %0, %1;\" : \"=l\"(s) : \"l\"(dst));\n  asm volatile(\"cp.async.cg.shared.global [%0], [%1], 16;\" :: \"l\"(s), \"l\"(src) : \"memory\");\n#else\n  *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(src);\n#endif\n}}\n"
            ),
            Helper::CpAsyncWait => format!(
                "{H} void {n}() {{\n#if __CUDA_ARCH__ >= 800\n  asm volatile(\"cp.async.wait_all;\" ::: \"memory\");\n#endif\n}}\n"
            ),
        }
    }
}
