//! Expressions as CUDA C, with loopforge's semantics (`te::arith`) and minimal
//! parentheses (by C precedence; a right operand of the same precedence is parenthesized,
//! so float evaluation order is kept).
//!
//! Vector expressions are printed one lane at a time: every method takes the lane to
//! print; scalars ignore it, a `Ramp` prints `base + lane * stride`, a vector variable
//! `name[lane]`.
//!
//! Types: every expression is printed with the C type of its dtype (`float`, `double`,
//! `int`, `long long`, `bool`), except int64 literals that fit 32 bits, printed without
//! `LL` (C converts them to the other operand's type; where both operands of `+ - *`
//! would be such, the left one is made `long long`).
//!
//! Halves (`float16`, `bfloat16`) are `unsigned short` bits in memory ([`mem_ctype`]) and
//! `float` values in expressions ([`ctype`]): a load converts the bits to `float`, a store
//! converts back, and every operation is computed in `float` and wrapped in
//! `lf_round_f16`/`lf_round_bf16` (see `prelude.rs`), which is `te::arith`'s semantics.

use super::prelude::Helper;
use super::stmt::Emitter;
use crate::error::{internal, Result};
use crate::te::{BinOp, CmpOp, DType, Expr, ExprNode, MathFn};
use std::collections::HashMap;

/// C precedence levels (higher binds tighter).
pub(crate) mod prec {
    /// Literals, names, calls, subscripts.
    pub const PRIMARY: u8 = 16;
    /// `-x`, `!x`, casts.
    pub const UNARY: u8 = 15;
    /// `* /`.
    pub const MUL: u8 = 13;
    /// `+ -`.
    pub const ADD: u8 = 12;
    /// `< <= > >=`.
    pub const REL: u8 = 10;
    /// `== !=`.
    pub const EQ: u8 = 9;
    /// `&&`.
    pub const AND: u8 = 5;
    /// `||`.
    pub const OR: u8 = 4;
    /// `?:`.
    pub const COND: u8 = 3;
}

/// A printed expression.
#[derive(Debug, Clone)]
pub(crate) struct Code {
    /// The C text.
    pub text: String,
    /// Its precedence (see [`prec`]).
    pub prec: u8,
    /// Whether its C type is exactly its dtype's (false only for int64 values built from
    /// literals that C types as `int`).
    pub exact: bool,
}

impl Code {
    fn new(text: String, prec: u8) -> Code {
        Code {
            text,
            prec,
            exact: true,
        }
    }
    /// The text, parenthesized unless its precedence is at least `min`.
    pub(crate) fn at(&self, min: u8) -> String {
        if self.prec >= min {
            self.text.clone()
        } else {
            format!("({})", self.text)
        }
    }
}

/// The C type of a value of a dtype in an expression or a variable (`float` for halves).
pub(crate) fn ctype(dt: DType) -> &'static str {
    match dt {
        DType::F32 | DType::F16 | DType::BF16 => "float",
        DType::F64 => "double",
        DType::I32 => "int",
        DType::I64 => "long long",
        DType::Bool => "bool",
    }
}

/// The C type of an element of a buffer of a dtype (`unsigned short`, the bits, for halves).
pub(crate) fn mem_ctype(dt: DType) -> &'static str {
    if dt.is_half() {
        "unsigned short"
    } else {
        ctype(dt)
    }
}

/// The helper rounding a `float` to half type `dt` (and back to `float`).
pub(crate) fn round_helper(dt: DType) -> Helper {
    if dt == DType::BF16 {
        Helper::RoundBf16
    } else {
        Helper::RoundF16
    }
}

/// An integer constant of type `dt`.
pub(crate) fn int_literal(v: i64, dt: DType) -> Code {
    let signed =
        |text: String, v: i64| Code::new(text, if v < 0 { prec::UNARY } else { prec::PRIMARY });
    match dt {
        DType::Bool => Code::new(if v != 0 { "true" } else { "false" }.into(), prec::PRIMARY),
        DType::I32 => {
            let v = v as i32;
            if v == i32::MIN {
                Code::new("(-2147483647 - 1)".into(), prec::PRIMARY)
            } else {
                signed(v.to_string(), v as i64)
            }
        }
        DType::I64 => {
            if v == i64::MIN {
                Code::new("(-9223372036854775807LL - 1LL)".into(), prec::PRIMARY)
            } else if i32::try_from(v).is_ok() {
                Code {
                    exact: false,
                    ..signed(v.to_string(), v)
                }
            } else {
                signed(format!("{}LL", v), v)
            }
        }
        DType::F32 | DType::F64 | DType::F16 | DType::BF16 => {
            float_literal(crate::te::arith::int_to_float(dt, v), dt)
        }
    }
}

/// A float constant of type `dt` (non-finite values through bit patterns).
pub(crate) fn float_literal(v: f64, dt: DType) -> Code {
    if !dt.is_float() {
        return int_literal(v as i64, dt);
    }
    // A half constant is the `float` of its (exactly representable) value.
    let dt = if dt.is_half() { DType::F32 } else { dt };
    let (nan, inf) = if dt == DType::F32 {
        ("__int_as_float(0x7fc00000)", "__int_as_float(0x7f800000)")
    } else {
        (
            "__longlong_as_double(0x7ff8000000000000LL)",
            "__longlong_as_double(0x7ff0000000000000LL)",
        )
    };
    let text = if v.is_nan() {
        nan.to_string()
    } else if v.is_infinite() {
        if v > 0.0 {
            inf.to_string()
        } else {
            format!("-{}", inf)
        }
    } else if dt == DType::F32 {
        format!("{:?}f", v as f32)
    } else {
        format!("{:?}", v)
    };
    let neg = text.starts_with('-');
    Code::new(text, if neg { prec::UNARY } else { prec::PRIMARY })
}

impl Emitter<'_> {
    /// Number of lanes of `e` (vector `let` variables count with their lanes).
    pub(crate) fn lanes(&self, e: &Expr) -> u32 {
        match e.node() {
            ExprNode::Var(v) => self
                .vars
                .get(&v.id())
                .and_then(|s| s.last())
                .map(|b| b.lanes)
                .unwrap_or(1),
            ExprNode::Ramp(_, _, l) | ExprNode::Broadcast(_, l) => *l,
            ExprNode::Let(v, val, body) => {
                let mut m = HashMap::new();
                m.insert(v.id(), val.clone());
                self.lanes(&body.substitute(&m))
            }
            ExprNode::Read(..) | ExprNode::Reduce(_) => 1,
            _ => e
                .children()
                .into_iter()
                .map(|c| self.lanes(c))
                .max()
                .unwrap_or(1),
        }
    }

    /// Lane `lane` of `e` as C text of at least precedence `min` (parenthesized if needed).
    pub(crate) fn operand(&mut self, e: &Expr, lane: u32, min: u8) -> Result<String> {
        Ok(self.expr(e, lane)?.at(min))
    }

    /// Lane `lane` of `e` as C text (any precedence: for contexts such as `x = ...;`).
    pub(crate) fn text(&mut self, e: &Expr, lane: u32) -> Result<String> {
        Ok(self.expr(e, lane)?.text)
    }

    /// Record that the code uses helper `h` (and what it calls).
    pub(crate) fn use_helper(&mut self, h: Helper) {
        self.helpers.insert(h);
        self.helpers.extend(h.deps().iter().copied());
    }

    /// `text` (a `float` expression) wrapped in helper `h`.
    pub(crate) fn wrap_helper(&mut self, h: Helper, text: &str) -> Code {
        self.use_helper(h);
        Code::new(format!("{}({})", h.name(), text), prec::PRIMARY)
    }

    /// `code` rounded to `dt` when `dt` is a half type (after an operation computed in
    /// `float`); unchanged otherwise.
    fn round_to(&mut self, dt: DType, code: Code) -> Code {
        if dt.is_half() {
            self.wrap_helper(round_helper(dt), &code.text)
        } else {
            code
        }
    }

    fn helper(&mut self, h: Helper, args: &[&Expr], lane: u32) -> Result<Code> {
        self.use_helper(h);
        let mut a = Vec::new();
        for x in args {
            a.push(self.text(x, lane)?);
        }
        Ok(Code::new(
            format!("{}({})", h.name(), a.join(", ")),
            prec::PRIMARY,
        ))
    }

    fn call(&mut self, name: &str, args: &[&Expr], lane: u32) -> Result<Code> {
        let mut a = Vec::new();
        for x in args {
            a.push(self.text(x, lane)?);
        }
        Ok(Code::new(
            format!("{}({})", name, a.join(", ")),
            prec::PRIMARY,
        ))
    }

    fn infix(&mut self, op: &str, p: u8, a: &Expr, b: &Expr, lane: u32) -> Result<Code> {
        let (x, y) = (self.expr(a, lane)?, self.expr(b, lane)?);
        let exact = x.exact || y.exact;
        let left = if exact || a.dtype() != DType::I64 {
            x.at(p)
        } else if x.prec == prec::PRIMARY && x.text.bytes().all(|c| c.is_ascii_digit()) {
            format!("{}LL", x.text)
        } else {
            format!("(long long){}", x.at(prec::UNARY))
        };
        Ok(Code {
            text: format!("{} {} {}", left, op, y.at(p + 1)),
            prec: p,
            exact: true,
        })
    }

    /// Lane `lane` of `e` as C.
    pub(crate) fn expr(&mut self, e: &Expr, lane: u32) -> Result<Code> {
        match e.node() {
            ExprNode::Int(v, dt) => Ok(int_literal(*v, *dt)),
            ExprNode::Float(v, dt) => Ok(float_literal(*v, *dt)),
            ExprNode::Var(v) => match self.vars.get(&v.id()).and_then(|s| s.last()) {
                Some(b) if b.lanes > 1 => Ok(Code::new(
                    format!("{}[{}]", b.name, lane.min(b.lanes - 1)),
                    prec::PRIMARY,
                )),
                Some(b) => Ok(Code::new(b.name.clone(), prec::PRIMARY)),
                None => Err(internal(
                    format!(
                        "CUDA codegen: variable {} is used where it is not bound",
                        v.name()
                    ),
                    self.func,
                )),
            },
            ExprNode::Binary(op, a, b) => self.binary(*op, a, b, lane),
            ExprNode::Cmp(op, a, b) => {
                let (s, p) = match op {
                    CmpOp::Eq => ("==", prec::EQ),
                    CmpOp::Ne => ("!=", prec::EQ),
                    CmpOp::Lt => ("<", prec::REL),
                    CmpOp::Le => ("<=", prec::REL),
                    CmpOp::Gt => (">", prec::REL),
                    CmpOp::Ge => (">=", prec::REL),
                };
                let (x, y) = (self.operand(a, lane, p)?, self.operand(b, lane, p + 1)?);
                Ok(Code::new(format!("{} {} {}", x, s, y), p))
            }
            ExprNode::And(a, b) => {
                let (x, y) = (
                    self.operand(a, lane, prec::AND)?,
                    self.operand(b, lane, prec::AND + 1)?,
                );
                Ok(Code::new(format!("{} && {}", x, y), prec::AND))
            }
            ExprNode::Or(a, b) => {
                let (x, y) = (
                    self.operand(a, lane, prec::OR)?,
                    self.operand(b, lane, prec::OR + 1)?,
                );
                Ok(Code::new(format!("{} || {}", x, y), prec::OR))
            }
            ExprNode::Not(a) => Ok(Code::new(
                format!("!{}", self.operand(a, lane, prec::UNARY)?),
                prec::UNARY,
            )),
            ExprNode::Select(c, t, f) => {
                let c = self.operand(c, lane, prec::COND + 1)?;
                let (x, y) = (self.expr(t, lane)?, self.expr(f, lane)?);
                Ok(Code {
                    text: format!(
                        "{} ? {} : {}",
                        c,
                        x.at(prec::COND + 1),
                        y.at(prec::COND + 1)
                    ),
                    prec: prec::COND,
                    exact: x.exact || y.exact,
                })
            }
            ExprNode::Cast(to, a) => self.cast(*to, a, lane),
            ExprNode::Call(f, args) => self.math(*f, args, lane),
            ExprNode::Load(buf, idx) => {
                self.not_fragment(buf)?;
                if let Some(t) = self.vec_loads.get(&(e.node() as *const ExprNode)) {
                    let field = ["x", "y", "z", "w"][lane.min(3) as usize];
                    return Ok(Code::new(format!("{}.{}", t, field), prec::PRIMARY));
                }
                let (name, flat) = self.access(buf, idx)?;
                let i = self.text(&flat, lane)?;
                let elem = format!("{}[{}]", name, i);
                Ok(match buf.dtype() {
                    DType::F16 => self.wrap_helper(Helper::F16ToF32, &elem),
                    DType::BF16 => self.wrap_helper(Helper::Bf16ToF32, &elem),
                    _ => Code::new(elem, prec::PRIMARY),
                })
            }
            ExprNode::Ramp(base, stride, _) => {
                let dt = base.dtype();
                let off = (lane as i64).wrapping_mul(*stride);
                if off == 0 {
                    return self.expr(base, 0);
                }
                let sum = Expr::new(ExprNode::Binary(
                    BinOp::Add,
                    base.clone(),
                    Expr::int_of(off, dt),
                ));
                self.expr(&sum, 0)
            }
            ExprNode::Broadcast(v, _) => self.expr(v, 0),
            ExprNode::Let(v, val, body) => {
                // Pure: substituting the value keeps the meaning.
                let mut m = HashMap::new();
                m.insert(v.id(), val.clone());
                self.expr(&body.substitute(&m), lane)
            }
            ExprNode::Read(..) | ExprNode::Reduce(_) => Err(internal(
                format!("CUDA codegen: tensor-level expression {} in the loop IR", e),
                self.func,
            )),
        }
    }

    fn binary(&mut self, op: BinOp, a: &Expr, b: &Expr, lane: u32) -> Result<Code> {
        use BinOp::*;
        let dt = a.dtype();
        match dt {
            DType::F32 | DType::F64 | DType::F16 | DType::BF16 => {
                // Halves: computed in float, then rounded.
                let f32_ = dt != DType::F64;
                let code = match op {
                    Add => self.infix("+", prec::ADD, a, b, lane),
                    Sub => self.infix("-", prec::ADD, a, b, lane),
                    Mul => self.infix("*", prec::MUL, a, b, lane),
                    Div => self.infix("/", prec::MUL, a, b, lane),
                    Mod => self.call(if f32_ { "fmodf" } else { "fmod" }, &[a, b], lane),
                    Min => self.helper(
                        if f32_ {
                            Helper::FminF32
                        } else {
                            Helper::FminF64
                        },
                        &[a, b],
                        lane,
                    ),
                    Max => self.helper(
                        if f32_ {
                            Helper::FmaxF32
                        } else {
                            Helper::FmaxF64
                        },
                        &[a, b],
                        lane,
                    ),
                }?;
                Ok(self.round_to(dt, code))
            }
            DType::I32 => match op {
                Add => self.helper(Helper::AddI32, &[a, b], lane),
                Sub => self.helper(Helper::SubI32, &[a, b], lane),
                Mul => self.helper(Helper::MulI32, &[a, b], lane),
                Div => self.helper(Helper::FloorDivI32, &[a, b], lane),
                Mod => self.helper(Helper::FloorModI32, &[a, b], lane),
                Min => self.call("min", &[a, b], lane),
                Max => self.call("max", &[a, b], lane),
            },
            DType::I64 => match op {
                Add => self.infix("+", prec::ADD, a, b, lane),
                Sub => self.infix("-", prec::ADD, a, b, lane),
                Mul => self.infix("*", prec::MUL, a, b, lane),
                Div => self.helper(Helper::FloorDivI64, &[a, b], lane),
                Mod => self.helper(Helper::FloorModI64, &[a, b], lane),
                Min => self.call("llmin", &[a, b], lane),
                Max => self.call("llmax", &[a, b], lane),
            },
            DType::Bool => {
                // Arithmetic on 0/1, the result `!= 0` (see te::arith).
                let (s, p) = match op {
                    Add | Max => ("||", prec::OR),
                    Sub => ("!=", prec::EQ),
                    Mul | Div | Min => ("&&", prec::AND),
                    Mod => return Ok(int_literal(0, DType::Bool)),
                };
                let (x, y) = (self.operand(a, lane, p)?, self.operand(b, lane, p + 1)?);
                Ok(Code::new(format!("{} {} {}", x, s, y), p))
            }
        }
    }

    fn cast(&mut self, to: DType, a: &Expr, lane: u32) -> Result<Code> {
        let from = a.dtype();
        if from == to {
            return self.expr(a, lane);
        }
        if to == DType::Bool {
            let zero = if from.is_float() {
                float_literal(0.0, from).text
            } else {
                "0".to_string()
            };
            let x = self.operand(a, lane, prec::REL)?;
            return Ok(Code::new(format!("{} != {}", x, zero), prec::EQ));
        }
        if from.is_float() && to.is_int() {
            // cvt.rzi: truncates, saturates, NaN -> 0 (as Rust's `as`).
            // A half is a `float` in expressions.
            let f = match (from, to) {
                (DType::F64, DType::I32) => "__double2int_rz",
                (DType::F64, _) => "__double2ll_rz",
                (_, DType::I32) => "__float2int_rz",
                _ => "__float2ll_rz",
            };
            return self.call(f, &[a], lane);
        }
        if to.is_half() {
            // Through float: convert (unless the value already is one), then round.
            let x = if ctype(from) == "float" {
                self.text(a, lane)?
            } else {
                format!("(float){}", self.operand(a, lane, prec::UNARY)?)
            };
            return Ok(self.wrap_helper(round_helper(to), &x));
        }
        let x = self.operand(a, lane, prec::UNARY)?;
        Ok(Code::new(format!("({}){}", ctype(to), x), prec::UNARY))
    }

    fn math(&mut self, f: MathFn, args: &[Expr], lane: u32) -> Result<Code> {
        let dt = args.first().map(|a| a.dtype()).unwrap_or(DType::F32);
        if args.len() != f.arity() {
            return Err(internal(
                format!(
                    "CUDA codegen: {} takes {} argument(s) but has {}",
                    f.name(),
                    f.arity(),
                    args.len()
                ),
                self.func,
            ));
        }
        let refs: Vec<&Expr> = args.iter().collect();
        if dt.is_float() {
            // Halves: the float function, rounded.
            let code = self.float_math(f, args, dt, lane)?;
            return Ok(self.round_to(dt, code));
        }
        match (f, dt) {
            (MathFn::Abs, DType::I32) => self.call("abs", &refs, lane),
            (MathFn::Abs, DType::I64) => self.call("llabs", &refs, lane),
            (MathFn::Floor | MathFn::Ceil, DType::I32 | DType::I64) => self.expr(&args[0], lane),
            _ => Err(internal(
                format!(
                    "CUDA codegen: math function {} applied to type {}",
                    f.name(),
                    dt
                ),
                self.func,
            )),
        }
    }

    /// Math function `f` of float type `dt` (computed in `float` for halves, unrounded).
    fn float_math(&mut self, f: MathFn, args: &[Expr], dt: DType, lane: u32) -> Result<Code> {
        let refs: Vec<&Expr> = args.iter().collect();
        let suffix = if dt == DType::F64 { "" } else { "f" };
        let base = match f {
            MathFn::Exp => "exp",
            MathFn::Log => "log",
            MathFn::Log1p => "log1p",
            MathFn::Sqrt => "sqrt",
            MathFn::Tanh => "tanh",
            MathFn::Erf => "erf",
            MathFn::Pow => "pow",
            MathFn::Abs => "fabs",
            MathFn::Floor => "floor",
            MathFn::Ceil => "ceil",
            MathFn::Sigmoid => {
                let one = float_literal(1.0, dt).text;
                let x = self.operand(&args[0], lane, prec::UNARY)?;
                // `-(-1.5f)`, not `--1.5f`.
                let x = if x.starts_with('-') {
                    format!("({})", x)
                } else {
                    x
                };
                return Ok(Code::new(
                    format!("{one} / ({one} + exp{suffix}(-{x}))"),
                    prec::MUL,
                ));
            }
        };
        self.call(&format!("{}{}", base, suffix), &refs, lane)
    }
}
