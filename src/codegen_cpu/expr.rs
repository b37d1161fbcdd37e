//! Expression lowering: constants, variables, arithmetic (with fused multiply-add when the ISA
//! has it), comparisons, logic, select, casts, math calls, loads, ramps, broadcasts and lets.
//! Semantics follow the reference interpreter (see the crate docs and `arith.rs`).

use super::fngen::{Binding, FnGen};
use super::helpers::math_helper_name;
use super::repr::{val_type, Val};
use crate::error::{internal, Result};
use crate::te::{BinOp, CmpOp, DType, Expr, ExprNode, MathFn};
use cranelift::prelude::*;

/// The integer value of a constant or a broadcast constant.
fn const_int(e: &Expr) -> Option<i64> {
    match e.node() {
        ExprNode::Int(v, _) => Some(*v),
        ExprNode::Broadcast(x, _) => const_int(x),
        _ => None,
    }
}

/// A float constant (scalar or broadcast) that is not NaN.
fn const_float(e: &Expr) -> Option<f64> {
    match e.node() {
        ExprNode::Float(v, _) if !v.is_nan() => Some(*v),
        ExprNode::Broadcast(x, _) => const_float(x),
        _ => None,
    }
}

/// The operands of an f32/f64 multiply (halves round after every operation: never fused).
fn as_fmul(e: &Expr) -> Option<(&Expr, &Expr)> {
    match e.node() {
        ExprNode::Binary(BinOp::Mul, a, b) if a.dtype().is_float() && !a.dtype().is_half() => {
            Some((a, b))
        }
        _ => None,
    }
}

fn int_cc(op: CmpOp) -> IntCC {
    match op {
        CmpOp::Eq => IntCC::Equal,
        CmpOp::Ne => IntCC::NotEqual,
        CmpOp::Lt => IntCC::SignedLessThan,
        CmpOp::Le => IntCC::SignedLessThanOrEqual,
        CmpOp::Gt => IntCC::SignedGreaterThan,
        CmpOp::Ge => IntCC::SignedGreaterThanOrEqual,
    }
}

/// Float condition codes with IEEE semantics: every comparison with NaN is false except `!=`.
fn float_cc(op: CmpOp) -> FloatCC {
    match op {
        CmpOp::Eq => FloatCC::Equal,
        CmpOp::Ne => FloatCC::NotEqual,
        CmpOp::Lt => FloatCC::LessThan,
        CmpOp::Le => FloatCC::LessThanOrEqual,
        CmpOp::Gt => FloatCC::GreaterThan,
        CmpOp::Ge => FloatCC::GreaterThanOrEqual,
    }
}

impl<'a, 'f> FnGen<'a, 'f> {
    /// Lower an expression to a value.
    pub fn gen_expr(&mut self, e: &Expr) -> Result<Val> {
        match e.node() {
            ExprNode::Int(v, dt) => Ok(Val::scalar(self.iconst_of(*dt, *v), *dt)),
            ExprNode::Float(v, dt) => {
                let c = match dt {
                    DType::F32 => self.b.ins().f32const(*v as f32),
                    DType::F64 => self.b.ins().f64const(*v),
                    DType::F16 | DType::BF16 => self.half_const(*dt, *v),
                    _ => self.iconst_of(*dt, *v as i64),
                };
                Ok(Val::scalar(c, *dt))
            }
            ExprNode::Var(v) => self.var_value(v),
            ExprNode::Binary(op, a, b) => self.gen_binary(*op, a, b),
            ExprNode::Cmp(op, a, b) => {
                let (a, b) = self.gen_pair(a, b)?;
                if a.dt.is_half() {
                    let cc = float_cc(*op);
                    return self.half_map(&[a, b], DType::Bool, &mut |g, x| {
                        Ok(g.b.ins().fcmp(cc, x[0], x[1]))
                    });
                }
                let v = if a.dt.is_float() {
                    self.b.ins().fcmp(float_cc(*op), a.v, b.v)
                } else {
                    self.b.ins().icmp(int_cc(*op), a.v, b.v)
                };
                Ok(Val {
                    v,
                    dt: DType::Bool,
                    lanes: a.lanes,
                })
            }
            ExprNode::And(a, b) | ExprNode::Or(a, b) => {
                let a = self.gen_bool(a)?;
                let b = self.gen_bool(b)?;
                let (a, b) = self.unify_lanes(a, b)?;
                let v = if matches!(e.node(), ExprNode::And(..)) {
                    self.b.ins().band(a.v, b.v)
                } else {
                    self.b.ins().bor(a.v, b.v)
                };
                Ok(Val { v, ..a })
            }
            ExprNode::Not(a) => {
                let a = self.gen_bool(a)?;
                let v = if a.is_vec() {
                    self.b.ins().bnot(a.v)
                } else {
                    self.b.ins().bxor_imm_s(a.v, 1)
                };
                Ok(Val { v, ..a })
            }
            ExprNode::Select(c, t, f) => self.gen_select(c, t, f),
            ExprNode::Cast(t, x) => {
                let x = self.gen_expr(x)?;
                self.cast(x, *t)
            }
            ExprNode::Call(f, args) => self.gen_call(*f, args),
            ExprNode::Load(buf, idx) => self.gen_load(buf, idx),
            ExprNode::Ramp(base, stride, lanes) => self.gen_ramp(base, *stride, *lanes),
            ExprNode::Broadcast(x, lanes) => {
                let x = self.gen_expr(x)?;
                self.splat(x, *lanes)
            }
            ExprNode::Let(v, value, body) => {
                let mut val = self.gen_expr(value)?;
                if val.lanes == 1 && val.dt != v.dtype() {
                    val = self.cast(val, v.dtype())?;
                }
                let prev = self.bind_var(v, Binding::Value(val));
                let r = self.gen_expr(body);
                self.unbind_var(v, prev);
                r
            }
            ExprNode::Read(..) | ExprNode::Reduce(_) => Err(internal(
                format!(
                    "tensor-level expression reached the CPU backend (lowering incomplete): {}",
                    e
                ),
                self.src,
            )),
        }
    }

    /// Lower a condition, converting a non-bool to `!= 0`.
    fn gen_bool(&mut self, e: &Expr) -> Result<Val> {
        let v = self.gen_expr(e)?;
        self.cast(v, DType::Bool)
    }

    /// Lower two operands and bring them to one dtype and lane count.
    fn gen_pair(&mut self, a: &Expr, b: &Expr) -> Result<(Val, Val)> {
        let a = self.gen_expr(a)?;
        let b = self.gen_expr(b)?;
        self.unify(a, b)
    }

    /// Bring two values to one dtype (promoting) and lane count (splatting).
    fn unify(&mut self, mut a: Val, mut b: Val) -> Result<(Val, Val)> {
        if a.dt != b.dt {
            let t = DType::promote(a.dt, b.dt);
            a = self.cast(a, t)?;
            b = self.cast(b, t)?;
        }
        self.unify_lanes(a, b)
    }

    fn gen_binary(&mut self, op: BinOp, ae: &Expr, be: &Expr) -> Result<Val> {
        if op == BinOp::Add && self.cx.fma {
            let fused = match (as_fmul(ae), as_fmul(be)) {
                (Some((x, y)), _) => Some((x, y, be)),
                (None, Some((x, y))) => Some((x, y, ae)),
                _ => None,
            };
            if let Some((x, y, c)) = fused {
                let mut v3 = [self.gen_expr(x)?, self.gen_expr(y)?, self.gen_expr(c)?];
                let dt = DType::promote(DType::promote(v3[0].dt, v3[1].dt), v3[2].dt);
                let lanes = v3.iter().map(|v| v.lanes).max().unwrap_or(1);
                for v in v3.iter_mut() {
                    let t = self.cast(*v, dt)?;
                    *v = self.splat(t, lanes)?;
                }
                let v = self.b.ins().fma(v3[0].v, v3[1].v, v3[2].v);
                return Ok(Val { v, dt, lanes });
            }
        }
        let (a, b) = self.gen_pair(ae, be)?;
        if a.dt.is_half() {
            return self.half_binary(op, a, b);
        }
        let (x, y) = (a.v, b.v);
        if a.dt.is_float() && matches!(op, BinOp::Min | BinOp::Max) {
            // Against a constant (relu, clip): one comparison and a select instead of
            // Cranelift's general NaN- and zero-sign-handling sequence.
            if let Some(c) = const_float(be) {
                return self.min_max_const(op, a, b, c);
            }
            if let Some(c) = const_float(ae) {
                return self.min_max_const(op, b, a, c);
            }
            if a.lanes > 1 {
                return self.min_max_vector(op, a, b);
            }
        }
        if a.dt.is_float() {
            let v = match op {
                BinOp::Add => self.b.ins().fadd(x, y),
                BinOp::Sub => self.b.ins().fsub(x, y),
                BinOp::Mul => self.b.ins().fmul(x, y),
                BinOp::Div => self.b.ins().fdiv(x, y),
                BinOp::Min => self.b.ins().fmin(x, y),
                BinOp::Max => self.b.ins().fmax(x, y),
                BinOp::Mod => {
                    let name = math_helper_name(None, a.dt).expect("float dtype");
                    return self.helper_lanes(name, &[a, b]);
                }
            };
            return Ok(Val { v, ..a });
        }
        let v = match op {
            BinOp::Add => self.b.ins().iadd(x, y),
            BinOp::Sub => self.b.ins().isub(x, y),
            BinOp::Mul => self.b.ins().imul(x, y),
            BinOp::Min => self.b.ins().smin(x, y),
            BinOp::Max => self.b.ins().smax(x, y),
            BinOp::Div | BinOp::Mod => {
                return self.int_divmod(a, b, const_int(be), op == BinOp::Mod)
            }
        };
        Ok(Val { v, ..a })
    }

    /// `min(x, c)` or `max(x, c)` (`op`) of floats with `cv` the constant `c` (not NaN):
    /// `x cmp c ? c : x`, the comparison chosen so that the result is the interpreter's
    /// (NaN-propagating: a NaN `x` fails every comparison and is returned; `-0.0 <
    /// +0.0`: `max(-0.0, +0.0)` is `+0.0` and `min(+0.0, -0.0)` is `-0.0`).
    fn min_max_const(&mut self, op: BinOp, x: Val, cv: Val, c: f64) -> Result<Val> {
        let cc = match (op, c.is_sign_negative()) {
            (BinOp::Max, false) => FloatCC::LessThanOrEqual,
            (BinOp::Max, true) => FloatCC::LessThan,
            (_, false) => FloatCC::GreaterThan,
            (_, true) => FloatCC::GreaterThanOrEqual,
        };
        // A scalar goes through a vector (a scalar float `select` is a branch, which
        // the signs of a relu's inputs would make unpredictable).
        let lanes = if x.lanes == 1 {
            16 / x.dt.bytes() as u32
        } else {
            x.lanes
        };
        let (xv, cvv) = (self.splat(x, lanes)?, self.splat(cv, lanes)?);
        let m = self.b.ins().fcmp(cc, xv.v, cvv.v);
        let v = self.blend(m, cvv, xv)?.v;
        let v = if x.lanes == 1 {
            self.b.ins().extractlane(v, 0)
        } else {
            v
        };
        Ok(Val { v, ..x })
    }

    /// `min(a, b)` or `max(a, b)` (`op`) of float vectors with the interpreter's
    /// semantics in five instructions where Cranelift's `fmin`/`fmax` take eight: x86's
    /// `minps`/`maxps` both ways round (they return their second operand where either is
    /// NaN or both are zeros, and agree everywhere else), ORed for a min and ANDed for a
    /// max (of two zeros, `-0.0` wins a min and `+0.0` a max: the sign bit ORed or ANDed),
    /// then every lane where an operand is NaN set to all ones (a NaN). A max pool's
    /// windows and a softmax row's maximum are chains of these.
    fn min_max_vector(&mut self, op: BinOp, a: Val, b: Val) -> Result<Val> {
        // `x < y ? x : y` is `minps x, y` and `y < x ? x : y` is `maxps x, y` to
        // Cranelift's x86 lowering (the patterns of wasm's `pmin`/`pmax`).
        let native = |s: &mut Self, x: Val, y: Val| -> Result<Value> {
            let m = if op == BinOp::Min {
                s.b.ins().fcmp(FloatCC::LessThan, x.v, y.v)
            } else {
                s.b.ins().fcmp(FloatCC::LessThan, y.v, x.v)
            };
            Ok(s.blend(m, x, y)?.v)
        };
        let (m1, m2) = (native(self, a, b)?, native(self, b, a)?);
        let both = if op == BinOp::Min {
            self.b.ins().bor(m1, m2)
        } else {
            self.b.ins().band(m1, m2)
        };
        let nan = self.b.ins().fcmp(FloatCC::Unordered, a.v, b.v);
        let nan = self.mask_as(nan, a)?;
        let v = self.b.ins().bor(both, nan);
        Ok(Val { v, ..a })
    }

    /// Lanes of `t` where the lane mask `mask` (a vector comparison's result) is set,
    /// of `f` elsewhere; `t` and `f` are vectors of one type.
    pub(super) fn blend(&mut self, mask: Value, t: Val, f: Val) -> Result<Val> {
        let mask = self.mask_as(mask, t)?;
        let v = self.b.ins().bitselect(mask, t.v, f.v);
        Ok(Val { v, ..t })
    }

    /// The lane mask `mask` (a vector comparison's result) as a vector of `like`'s type,
    /// bit for bit.
    fn mask_as(&mut self, mask: Value, like: Val) -> Result<Value> {
        let ty = val_type(like.dt, like.lanes)?;
        if self.b.func.dfg.value_type(mask) == ty {
            return Ok(mask);
        }
        Ok(self.lanes_as(ty, mask))
    }

    /// The 128 bits of the vector `v` as a vector of type `ty` (lane order kept).
    pub(super) fn lanes_as(&mut self, ty: Type, v: Value) -> Value {
        let little = MemFlagsData::new().with_endianness(codegen::ir::Endianness::Little);
        self.b.ins().bitcast(ty, little, v)
    }

    fn gen_select(&mut self, c: &Expr, t: &Expr, f: &Expr) -> Result<Val> {
        let c = self.gen_bool(c)?;
        let (t, f) = self.gen_pair(t, f)?;
        if c.lanes == 1 {
            let v = self.b.ins().select(c.v, t.v, f.v);
            return Ok(Val { v, ..t });
        }
        let t = self.splat(t, c.lanes)?;
        let f = self.splat(f, c.lanes)?;
        self.blend(c.v, t, f)
    }

    fn gen_call(&mut self, f: MathFn, args: &[Expr]) -> Result<Val> {
        if args.len() != f.arity() {
            return Err(internal(
                format!(
                    "{} takes {} arguments, got {}",
                    f.name(),
                    f.arity(),
                    args.len()
                ),
                self.src,
            ));
        }
        let mut vals = Vec::with_capacity(args.len());
        for a in args {
            vals.push(self.gen_expr(a)?);
        }
        if vals.len() == 2 {
            let (a, b) = self.unify(vals[0], vals[1])?;
            vals = vec![a, b];
        }
        let a = vals[0];
        if !a.dt.is_float() {
            if f == MathFn::Abs && a.lanes == 1 && a.dt != DType::Bool {
                return Ok(Val {
                    v: self.b.ins().iabs(a.v),
                    ..a
                });
            }
            return Err(internal(
                format!("{} of a {} value (cast to float first)", f.name(), a.dt),
                self.src,
            ));
        }
        if a.dt.is_half() {
            return self.half_math(f, &vals);
        }
        let native = match f {
            MathFn::Sqrt => Some(self.b.ins().sqrt(a.v)),
            MathFn::Abs => Some(self.b.ins().fabs(a.v)),
            MathFn::Floor if self.cx.round => Some(self.b.ins().floor(a.v)),
            MathFn::Ceil if self.cx.round => Some(self.b.ins().ceil(a.v)),
            _ => None,
        };
        if let Some(v) = native {
            return Ok(Val { v, ..a });
        }
        if let Some(v) = self.inline_math(f, a)? {
            return Ok(v);
        }
        let name = math_helper_name(Some(f), a.dt).expect("math helper exists for float types");
        self.helper_lanes(name, &vals)
    }

    /// Call scalar helper `name` on `args` (all of one float dtype), lane by lane for vectors.
    fn helper_lanes(&mut self, name: &'static str, args: &[Val]) -> Result<Val> {
        let dt = args[0].dt;
        let lanes = args.iter().map(|a| a.lanes).max().unwrap_or(1);
        if lanes == 1 {
            let vs: Vec<Value> = args.iter().map(|a| a.v).collect();
            let r = self
                .call_helper(name, &vs)?
                .expect("math helpers return a value");
            return Ok(Val::scalar(r, dt));
        }
        self.map_lanes(args, lanes, dt, &mut |g, x| {
            let vs: Vec<Value> = x.iter().map(|a| a.v).collect();
            Ok(g.call_helper(name, &vs)?
                .expect("math helpers return a value"))
        })
    }

    /// The vector `base + i * stride` for lane `i`.
    fn gen_ramp(&mut self, base: &Expr, stride: i64, lanes: u32) -> Result<Val> {
        let b = self.gen_expr(base)?;
        if b.is_vec() {
            return Err(internal(
                format!("ramp of a vector base {}", base),
                self.src,
            ));
        }
        let ty = val_type(b.dt, lanes)?;
        if b.dt.is_int() {
            let s = self.b.ins().splat(ty, b.v);
            let steps: Vec<i64> = (0..lanes as i64).map(|i| i * stride).collect();
            let c = self.vconst_ints(ty, &steps);
            let v = self.b.ins().iadd(s, c);
            return Ok(Val { v, dt: b.dt, lanes });
        }
        let mut vals = Vec::with_capacity(lanes as usize);
        for i in 0..lanes as i64 {
            let k = self.iconst_of(b.dt, i * stride);
            let v = if b.dt.is_half() {
                let (x, y) = (Val::scalar(b.v, b.dt), Val::scalar(k, b.dt));
                self.half_binary(BinOp::Add, x, y)?.v
            } else if b.dt.is_float() {
                self.b.ins().fadd(b.v, k)
            } else {
                self.b.ins().iadd(b.v, k)
            };
            vals.push(v);
        }
        self.build_vec(b.dt, &vals)
    }
}
