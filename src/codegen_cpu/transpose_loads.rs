//! Strided loads that together read a 4 x 4 block: four contiguous loads and a
//! transpose in registers instead of sixteen scalar loads.
//!
//! A tile copied across (a convolution's `[position][channel]` accumulator stored into
//! NCHW, four channels unrolled: `out[c0 + r][x .. x + 4] = acc[ramp(b + r, S, 4)]` for
//! `r` in 0..4) reads, in one straight-line sequence, the four 4-lane f32 vectors of
//! stride `S` (at least 4) at `b`, `b + 1`, `b + 2`, `b + 3`: the columns of the 4 x 4
//! block whose rows are the contiguous vectors at `b + i * S`. Before the sequence's
//! statements are lowered, each such complete group is loaded as its four rows and
//! transposed (eight shuffles); the four strided loads then take their column. In a
//! buffer promoted to variables (`promote.rs`) the rows are four of its variables, where
//! each row is one whole variable (a depthwise convolution's row of `[position][channel]`
//! vectors copied into NCHW).
//!
//! Applies only where it cannot change a value: the group's loads are in the stores of
//! one sequence (so every element of the block is read there and the contiguous loads
//! read nothing new), their indices use no variable bound inside a store's value, and no
//! statement of the sequence writes the buffer, at any depth (so the loads can move to
//! its start). Ensures: the same values as the strided loads.

use super::fngen::FnGen;
use super::repr::{val_type, Val};
use crate::error::Result;
use crate::lower::ir::{Buffer, Stmt};
use crate::lower::simplify::{key, simplify};
use crate::te::{DType, Expr, ExprNode};
use cranelift::prelude::*;
use std::collections::{HashMap, HashSet};

#[cfg(test)]
thread_local! {
    /// 4 x 4 blocks loaded and transposed on this thread (read by the tests).
    pub(crate) static TRANSPOSED_BLOCKS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// Loads lowered as a column of such a block on this thread (read by the tests).
    pub(crate) static TRANSPOSED_COLUMNS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// A strided 4-lane f32 load of a sequence.
struct Strided {
    buf: Buffer,
    stride: i64,
    /// The index base (lane 0's element).
    base: Expr,
    /// Key of the load's whole index (what the load path looks up).
    index_key: String,
}

impl<'a, 'f> FnGen<'a, 'f> {
    /// Load and transpose every complete 4 x 4 group of `v`'s strided loads (module doc),
    /// recording each column under its load's key for [`FnGen::transposed_load`].
    pub(crate) fn prepare_transposed_loads(&mut self, v: &[Stmt]) -> Result<()> {
        let mut loads: Vec<Strided> = vec![];
        for s in v {
            let Stmt::Store { value, .. } = s else {
                continue;
            };
            // Variables bound inside the value (`let` expressions): an index that uses
            // one cannot be computed at the sequence's start.
            let mut bound = vec![];
            value.visit(&mut |e| {
                if let ExprNode::Let(var, _, _) = e.node() {
                    bound.push(var.id());
                }
                true
            });
            value.visit(&mut |e| {
                if let ExprNode::Load(b, idx) = e.node() {
                    let inner = idx
                        .iter()
                        .any(|i| i.free_vars().iter().any(|v| bound.contains(&v.id())));
                    if let Some(l) = strided(b, idx).filter(|_| !inner) {
                        if !loads.iter().any(|x| x.index_key == l.index_key) {
                            loads.push(l);
                        }
                    }
                }
                true
            });
        }
        if loads.len() < 4 {
            return Ok(());
        }
        // Any buffer the sequence writes, at any depth (stores, intrinsic outputs): its
        // loads must not move to the sequence's start.
        let written: HashSet<String> = v.iter().flat_map(|s| s.written_buffers()).collect();
        loads.retain(|l| !written.contains(l.buf.name()));
        let ty = val_type(DType::F32, 4)?;
        for group in blocks(&loads) {
            let first = &loads[group[0]];
            let rows = if self.promoted.contains_key(first.buf.name()) {
                // A buffer in variables: its rows are variables (where they are whole
                // ones; otherwise its strided loads gather their lanes).
                match self.promoted_rows(first)? {
                    Some(rows) => rows,
                    None => continue,
                }
            } else {
                self.memory_rows(first, ty)?
            };
            #[cfg(test)]
            TRANSPOSED_BLOCKS.with(|n| n.set(n.get() + 1));
            for (col, v) in group.into_iter().zip(self.transpose4(rows, ty)) {
                let val = Val {
                    v,
                    dt: DType::F32,
                    lanes: 4,
                };
                self.transposed.insert(loads[col].index_key.clone(), val);
            }
        }
        Ok(())
    }

    /// The four rows of `first`'s block in memory: contiguous loads at `b + i * stride`.
    fn memory_rows(&mut self, first: &Strided, ty: Type) -> Result<[Value; 4]> {
        let base = self.buf_ptr_or_err(first.buf.name())?;
        let (addr, off) = self.gen_elem_addr(base, &first.base, DType::F32)?;
        let flags = self.load_flags(&first.buf, MemFlagsData::new().with_notrap());
        Ok(std::array::from_fn(|i| {
            let (a, o) = self.lane_addr(addr, off, i as u32, first.stride, DType::F32);
            self.b.ins().load(ty, flags, a, o)
        }))
    }

    /// The four rows of `first`'s block in a promoted buffer: the variables at `b + i *
    /// stride` (its base `b` a constant), where each is one whole variable.
    fn promoted_rows(&mut self, first: &Strided) -> Result<Option<[Value; 4]>> {
        let (Some(b), Some(4)) = (
            simplify(&first.base).as_int(),
            self.promoted.get(first.buf.name()).map(|p| p.lanes),
        ) else {
            return Ok(None);
        };
        if (0..4).any(|i| (b + i * first.stride) % 4 != 0) {
            return Ok(None);
        }
        let mut rows = [None; 4];
        for (i, row) in rows.iter_mut().enumerate() {
            let idx = Expr::new(ExprNode::Ramp(Expr::int(b + i as i64 * first.stride), 1, 4));
            *row = self.promoted_load(&first.buf, &[idx])?.map(|v| v.v);
        }
        Ok(rows
            .iter()
            .all(|r| r.is_some())
            .then(|| rows.map(|r| r.expect("checked"))))
    }

    /// The column recorded for a load of `buf` at `idx`, if any.
    pub(crate) fn transposed_load(&self, buf: &Buffer, idx: &[Expr]) -> Option<Val> {
        if self.transposed.is_empty() || idx.len() != 1 {
            return None;
        }
        self.transposed.get(&load_key(buf, &idx[0])).copied()
    }

    /// The columns of the 4 x 4 f32 block whose rows are `r`: two rounds of lane
    /// interleaving (as `unpcklps`/`unpckhps`, then `movlhps`/`movhlps`).
    fn transpose4(&mut self, r: [Value; 4], ty: Type) -> [Value; 4] {
        let lo01 = self.shuffle32(ty, r[0], r[1], [0, 4, 1, 5]);
        let hi01 = self.shuffle32(ty, r[0], r[1], [2, 6, 3, 7]);
        let lo23 = self.shuffle32(ty, r[2], r[3], [0, 4, 1, 5]);
        let hi23 = self.shuffle32(ty, r[2], r[3], [2, 6, 3, 7]);
        [
            self.shuffle32(ty, lo01, lo23, [0, 1, 4, 5]),
            self.shuffle32(ty, lo01, lo23, [2, 3, 6, 7]),
            self.shuffle32(ty, hi01, hi23, [0, 1, 4, 5]),
            self.shuffle32(ty, hi01, hi23, [2, 3, 6, 7]),
        ]
    }
}

/// The key a load of `buf` at `idx` is recorded under.
fn load_key(buf: &Buffer, idx: &Expr) -> String {
    format!("{}[{}]", buf.name(), key(idx))
}

/// `buf[ramp(b, stride, 4)]` of f32 with `stride >= 4`, as a [`Strided`].
fn strided(buf: &Buffer, idx: &[Expr]) -> Option<Strided> {
    if buf.dtype() != DType::F32 || idx.len() != 1 {
        return None;
    }
    let ExprNode::Ramp(base, stride, 4) = idx[0].node() else {
        return None;
    };
    if *stride < 4 || base.lanes() != 1 {
        return None;
    }
    Some(Strided {
        buf: buf.clone(),
        stride: *stride,
        base: base.clone(),
        index_key: load_key(buf, &idx[0]),
    })
}

/// Groups of four loads (indices into `loads`) of one buffer and stride whose bases are
/// `b, b + 1, b + 2, b + 3`, in that order; each load in one group at most.
fn blocks(loads: &[Strided]) -> Vec<[usize; 4]> {
    let mut by_kind: HashMap<(&str, i64), Vec<usize>> = HashMap::new();
    for (i, l) in loads.iter().enumerate() {
        by_kind.entry((l.buf.name(), l.stride)).or_default().push(i);
    }
    let mut out = vec![];
    for members in by_kind.into_values().filter(|m| m.len() >= 4) {
        let mut used = vec![false; members.len()];
        for a in 0..members.len() {
            if used[a] {
                continue;
            }
            // The loads a constant away from this one.
            let mut near: Vec<(i64, usize)> = (0..members.len())
                .filter(|&b| !used[b])
                .filter_map(|b| {
                    let d = loads[members[b]].base.clone() - loads[members[a]].base.clone();
                    simplify(&d).as_int().map(|d| (d, b))
                })
                .collect();
            near.sort();
            let mut k = 0;
            while k + 4 <= near.len() {
                let d0 = near[k].0;
                if (1..4).all(|r| near[k + r].0 == d0 + r as i64) {
                    let g = [near[k].1, near[k + 1].1, near[k + 2].1, near[k + 3].1];
                    g.iter().for_each(|&b| used[b] = true);
                    out.push(g.map(|b| members[b]));
                    k += 4;
                } else {
                    k += 1;
                }
            }
        }
    }
    out
}
