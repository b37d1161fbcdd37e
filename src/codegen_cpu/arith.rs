//! Integer floor division and floor modulo with loopforge's semantics: results round toward
//! negative infinity, a zero divisor yields 0 (never traps), and `MIN / -1` wraps instead of
//! trapping. Constant power-of-two divisors become shifts and masks; other divisors use
//! `sdiv`/`srem` with a sign fix-up.

use super::fngen::FnGen;
use super::repr::Val;
use crate::error::Result;
use cranelift::prelude::*;

impl<'a, 'f> FnGen<'a, 'f> {
    /// Floor division (`is_mod == false`) or floor modulo of integer values `a` and `b`
    /// (same lanes), where `b_const` is the divisor when it is a known constant.
    pub fn int_divmod(
        &mut self,
        a: Val,
        b: Val,
        b_const: Option<i64>,
        is_mod: bool,
    ) -> Result<Val> {
        let ty = self.b.func.dfg.value_type(a.v);
        let dt = a.dt;
        if let Some(c) = b_const {
            // Power-of-two constants: arithmetic shift and mask are exact floor operations.
            if c > 0 && (c as u64).is_power_of_two() {
                let k = c.trailing_zeros() as i64;
                let v = if is_mod {
                    if c == 1 {
                        self.zero_like(ty)
                    } else {
                        let m = self.int_splat_const(ty, c - 1);
                        self.b.ins().band(a.v, m)
                    }
                } else if k == 0 {
                    a.v
                } else {
                    self.b.ins().sshr_imm_s(a.v, k)
                };
                return Ok(Val { v, ..a });
            }
            if c == 0 {
                return Ok(Val {
                    v: self.zero_like(ty),
                    ..a
                });
            }
        }
        if a.lanes > 1 {
            // No vector integer division: go lane by lane (constants keep their fast path).
            let lanes = a.lanes;
            return self.map_lanes(&[a, b], lanes, a.dt, &mut |g, x| {
                Ok(g.int_divmod(x[0], x[1], b_const, is_mod)?.v)
            });
        }
        let (a, b) = (a.v, b.v);
        if let Some(c) = b_const {
            if c == -1 {
                let v = if is_mod {
                    self.zero_like(ty)
                } else {
                    self.b.ins().ineg(a)
                };
                return Ok(Val::scalar(v, dt));
            }
            // Constant divisor, not 0 or -1: no guard needed; fix the truncated result up.
            // (Cranelift turns division by a constant into a multiply by its magic number.)
            let cv = self.b.ins().iconst(ty, c);
            let q0 = self.b.ins().sdiv(a, cv);
            let prod = self.b.ins().imul(q0, cv);
            let r0 = self.b.ins().isub(a, prod);
            // Truncation rounds the wrong way when the remainder's sign differs from c's.
            let wrong = if c > 0 {
                self.b.ins().icmp_imm_s(IntCC::SignedLessThan, r0, 0)
            } else {
                self.b.ins().icmp_imm_s(IntCC::SignedGreaterThan, r0, 0)
            };
            let v = if is_mod {
                let adj = self.b.ins().iadd_imm_s(r0, c);
                self.b.ins().select(wrong, adj, r0)
            } else {
                let w = self.b.ins().uextend(ty, wrong);
                self.b.ins().isub(q0, w)
            };
            return Ok(Val::scalar(v, dt));
        }
        // General divisor: divide by 1 instead of 0 or -1 (which would trap), then fix up.
        let is_zero = self.b.ins().icmp_imm_s(IntCC::Equal, b, 0);
        let is_m1 = self.b.ins().icmp_imm_s(IntCC::Equal, b, -1);
        let bad = self.b.ins().bor(is_zero, is_m1);
        let one = self.b.ins().iconst(ty, 1);
        let bs = self.b.ins().select(bad, one, b);
        let v = if is_mod {
            // b == 0 or -1: bs == 1 so r0 == 0, which is the answer.
            let r0 = self.b.ins().srem(a, bs);
            let wrong = self.sign_mismatch(r0, bs);
            let adj = self.b.ins().iadd(r0, bs);
            self.b.ins().select(wrong, adj, r0)
        } else {
            let q0 = self.b.ins().sdiv(a, bs);
            let prod = self.b.ins().imul(q0, bs);
            let r0 = self.b.ins().isub(a, prod);
            let wrong = self.sign_mismatch(r0, bs);
            let w = self.b.ins().uextend(ty, wrong);
            let q = self.b.ins().isub(q0, w);
            let neg = self.b.ins().ineg(a);
            let q = self.b.ins().select(is_m1, neg, q);
            let zero = self.b.ins().iconst(ty, 0);
            self.b.ins().select(is_zero, zero, q)
        };
        Ok(Val::scalar(v, dt))
    }

    /// `r != 0 && sign(r) != sign(d)`, as an I8 0/1.
    fn sign_mismatch(&mut self, r: Value, d: Value) -> Value {
        let nz = self.b.ins().icmp_imm_s(IntCC::NotEqual, r, 0);
        let x = self.b.ins().bxor(r, d);
        let neg = self.b.ins().icmp_imm_s(IntCC::SignedLessThan, x, 0);
        self.b.ins().band(nz, neg)
    }

    /// Zero of integer (vector) type `ty`.
    fn zero_like(&mut self, ty: Type) -> Value {
        self.int_splat_const(ty, 0)
    }

    /// Integer constant `c` of scalar or vector type `ty`.
    pub fn int_splat_const(&mut self, ty: Type, c: i64) -> Value {
        if ty.is_vector() {
            let s = self.b.ins().iconst(ty.lane_type(), c);
            self.b.ins().splat(ty, s)
        } else {
            self.b.ins().iconst(ty, c)
        }
    }
}
