//! The device helper functions emitted before a kernel: loopforge's arithmetic where C's
//! differs (see `te::arith`). Only the helpers a kernel uses are emitted.
//!
//! - `lf_floordiv_*` / `lf_floormod_*`: floor division and modulo on `int` and
//!   `long long`, 0 for a zero divisor, `MIN / -1` wrapping to `MIN` (C's `/` and `%`
//!   truncate, and divide by zero or overflow undefinedly);
//! - `lf_fmin_*` / `lf_fmax_*`: float minimum and maximum that propagate NaN and order
//!   `-0.0` below `+0.0` (CUDA's `fminf` returns the other operand for a NaN);
//! - `lf_add_i32` / `lf_sub_i32` / `lf_mul_i32`: `int` arithmetic that wraps (signed
//!   overflow is undefined in C++ and NVVM optimizes on it).

/// One helper function of the prelude.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Helper {
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
}

impl Helper {
    /// The function's name in the generated code.
    pub(crate) fn name(self) -> &'static str {
        match self {
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
        match self {
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
        }
    }
}
