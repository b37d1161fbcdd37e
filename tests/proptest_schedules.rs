//! Property test: random sequences of legal schedule primitives never change what a
//! computation computes.
//!
//! For each of five computations (matmul, 2-D convolution, elementwise chains, row
//! reductions, softmax) with random small sizes (often not multiples of the split
//! factors), a random sequence of primitives is applied. Every primitive is chosen by
//! querying the schedule (live stages, leaf axes, their kinds, attach points, readers), so
//! that it is meant to be legal; when the schedule still refuses one, the refusal must be
//! an `Error::Schedule` (never a panic) and the step is skipped. The scheduled kernel is
//! then run on the CPU JIT and on the interpreter (which checks every access against its
//! buffer) and compared with the interpreter on the unscheduled computation. The trace
//! must replay (through JSON) to a schedule that lowers to the same IR text.
//!
//! One kind of step that a primitive accepts is undone by the generator (see
//! `attachments_consistent`): a later `compute_inline` or `cache_read` that leaves a stage
//! computed at a loop outside which one of its consumers now runs. Such a schedule is
//! illegal; `lower` refuses it with a schedule error (tested in tests/regressions.rs).
//!
//! The seed is fixed so that the test is deterministic; set `PROPTEST_RNG_SEED=<u64>`
//! (and `PROPTEST_CASES=<n>`) to explore other cases, `LOOPFORGE_PROPTEST_LOG=1` (with
//! `--nocapture`) to print every case's steps.

use loopforge::lower::ir::ForKind;
use loopforge::prelude::*;
use loopforge::schedule::Attach;
use proptest::prelude::*;
use proptest::test_runner::RngSeed;

// ---------------------------------------------------------------- computations

/// A computation under test: its outputs (what the schedule is created for) and its kernel
/// arguments (placeholders first, then outputs), all of constant shape.
struct Comp {
    name: &'static str,
    outputs: Vec<Tensor>,
    args: Vec<Tensor>,
}

fn c(v: usize) -> Expr {
    Expr::int(v as i64)
}

fn shape_of(t: &Tensor) -> Vec<usize> {
    t.shape()
        .iter()
        .map(|d| d.as_int().expect("constant shape") as usize)
        .collect()
}

/// `C[i, j] = sum_k A[i, k] * B[k, j]`, optionally followed by `D = max(C, 0) * 2`.
fn matmul(m: usize, n: usize, k: usize, epilogue: bool) -> Comp {
    let a = placeholder(&[c(m), c(k)], DType::F32, "A");
    let b = placeholder(&[c(k), c(n)], DType::F32, "B");
    let r = reduce_axis(0, k as i64, "k");
    let cc = compute(&[c(m), c(n)], "C", |i| {
        sum(
            a.at(&[i[0].clone(), r.x()]) * b.at(&[r.x(), i[1].clone()]),
            &[r.clone()],
        )
    });
    if epilogue {
        let d = compute(&[c(m), c(n)], "D", |i| {
            max(cc.at(&[i[0].clone(), i[1].clone()]), 0.0f32) * 2.0f32
        });
        Comp {
            name: "matmul+relu",
            outputs: vec![d.clone()],
            args: vec![a, b, d],
        }
    } else {
        Comp {
            name: "matmul",
            outputs: vec![cc.clone()],
            args: vec![a, b, cc],
        }
    }
}

/// Valid 2-D convolution `O[co, y, x] = sum_{ci, ry, rx} D[ci, y + ry, x + rx] * W[co, ci, ry, rx]`,
/// optionally over a scaled copy `P = D * 0.5` of the input (a producer stage whose
/// windows overlap, for compute_at / inline).
fn conv2d(ci: usize, co: usize, h: usize, w: usize, kk: usize, producer: bool) -> Comp {
    let d = placeholder(&[c(ci), c(h), c(w)], DType::F32, "D");
    let wt = placeholder(&[c(co), c(ci), c(kk), c(kk)], DType::F32, "W");
    let src = if producer {
        compute(&[c(ci), c(h), c(w)], "P", |i| {
            d.at(&[i[0].clone(), i[1].clone(), i[2].clone()]) * 0.5f32
        })
    } else {
        d.clone()
    };
    let rc = reduce_axis(0, ci as i64, "rc");
    let ry = reduce_axis(0, kk as i64, "ry");
    let rx = reduce_axis(0, kk as i64, "rx");
    let o = compute(&[c(co), c(h - kk + 1), c(w - kk + 1)], "O", |i| {
        sum(
            src.at(&[rc.x(), i[1].clone() + ry.x(), i[2].clone() + rx.x()])
                * wt.at(&[i[0].clone(), rc.x(), ry.x(), rx.x()]),
            &[rc.clone(), ry.clone(), rx.clone()],
        )
    });
    Comp {
        name: "conv2d",
        outputs: vec![o.clone()],
        args: vec![d, wt, o],
    }
}

/// Elementwise chains of two or three stages.
fn elementwise(n: usize, m: usize, variant: u8) -> Comp {
    match variant % 3 {
        0 => {
            // B = A * 2 + 1; C = exp(B) - A
            let a = placeholder(&[c(n), c(m)], DType::F32, "A");
            let b = compute(&[c(n), c(m)], "B", |i| {
                a.at(&[i[0].clone(), i[1].clone()]) * 2.0f32 + 1.0f32
            });
            let cc = compute(&[c(n), c(m)], "C", |i| {
                exp(b.at(&[i[0].clone(), i[1].clone()])) - a.at(&[i[0].clone(), i[1].clone()])
            });
            Comp {
                name: "elementwise2",
                outputs: vec![cc.clone()],
                args: vec![a, cc],
            }
        }
        1 => {
            // B = exp(A); C = tanh(B) * A; D = max(C, B) (a diamond: D reads B and C)
            let a = placeholder(&[c(n), c(m)], DType::F32, "A");
            let b = compute(&[c(n), c(m)], "B", |i| {
                exp(a.at(&[i[0].clone(), i[1].clone()]))
            });
            let cc = compute(&[c(n), c(m)], "C", |i| {
                tanh(b.at(&[i[0].clone(), i[1].clone()])) * a.at(&[i[0].clone(), i[1].clone()])
            });
            let d = compute(&[c(n), c(m)], "D", |i| {
                max(
                    cc.at(&[i[0].clone(), i[1].clone()]),
                    b.at(&[i[0].clone(), i[1].clone()]) - 1.5f32,
                )
            });
            Comp {
                name: "elementwise3",
                outputs: vec![d.clone()],
                args: vec![a, d],
            }
        }
        _ => {
            // B = A * A over (n + 1, m); C[i, j] = select(B[i, j] > B[i + 1, j], B[i, j], sigmoid(B[i + 1, j]))
            // then E = C + 1 (three stages, a stencil in the middle).
            let a = placeholder(&[c(n + 1), c(m)], DType::F32, "A");
            let b = compute(&[c(n + 1), c(m)], "B", |i| {
                a.at(&[i[0].clone(), i[1].clone()]) * a.at(&[i[0].clone(), i[1].clone()])
            });
            let cc = compute(&[c(n), c(m)], "C", |i| {
                let here = b.at(&[i[0].clone(), i[1].clone()]);
                let below = b.at(&[i[0].clone() + 1, i[1].clone()]);
                select(gt(here.clone(), below.clone()), here, sigmoid(below))
            });
            let e = compute(&[c(n), c(m)], "E", |i| {
                cc.at(&[i[0].clone(), i[1].clone()]) + 1.0f32
            });
            Comp {
                name: "stencil3",
                outputs: vec![e.clone()],
                args: vec![a, e],
            }
        }
    }
}

/// `B = A * 3`; `S[i] = sum_j B[i, j]`; `M[i] = max_j B[i, j]` (two outputs).
fn row_reduce(n: usize, m: usize) -> Comp {
    let a = placeholder(&[c(n), c(m)], DType::F32, "A");
    let b = compute(&[c(n), c(m)], "B", |i| {
        a.at(&[i[0].clone(), i[1].clone()]) * 3.0f32
    });
    let k1 = reduce_axis(0, m as i64, "k");
    let s = compute(&[c(n)], "S", |i| {
        sum(b.at(&[i[0].clone(), k1.x()]), &[k1.clone()])
    });
    let k2 = reduce_axis(0, m as i64, "r");
    let mx = compute(&[c(n)], "M", |i| {
        max_reduce(b.at(&[i[0].clone(), k2.x()]), &[k2.clone()])
    });
    Comp {
        name: "row_reduce",
        outputs: vec![s.clone(), mx.clone()],
        args: vec![a, s, mx],
    }
}

/// Softmax over rows: `M` (row max), `E = exp(A - M)`, `S` (row sum of E), `O = E / S`.
fn softmax(n: usize, m: usize) -> Comp {
    let a = placeholder(&[c(n), c(m)], DType::F32, "A");
    let k1 = reduce_axis(0, m as i64, "k");
    let mx = compute(&[c(n)], "M", |i| {
        max_reduce(a.at(&[i[0].clone(), k1.x()]), &[k1.clone()])
    });
    let e = compute(&[c(n), c(m)], "E", |i| {
        exp(a.at(&[i[0].clone(), i[1].clone()]) - mx.at(&[i[0].clone()]))
    });
    let k2 = reduce_axis(0, m as i64, "r");
    let s = compute(&[c(n)], "S", |i| {
        sum(e.at(&[i[0].clone(), k2.x()]), &[k2.clone()])
    });
    let o = compute(&[c(n), c(m)], "O", |i| {
        e.at(&[i[0].clone(), i[1].clone()]) / s.at(&[i[0].clone()])
    });
    Comp {
        name: "softmax",
        outputs: vec![o.clone()],
        args: vec![a, o],
    }
}

// ---------------------------------------------------------------- primitives

/// One randomly drawn primitive: `kind` selects it, `a`, `b`, `c` are random numbers it
/// uses to choose its stage, axes and factors among the legal ones.
#[derive(Debug, Clone)]
struct Op {
    kind: u8,
    a: u32,
    b: u32,
    c: u32,
}

const N_KINDS: u8 = 13;

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        (0..N_KINDS, any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(kind, a, b, c)| Op {
            kind,
            a,
            b,
            c,
        }),
        0..12,
    )
}

fn pick<T: Clone>(v: &[T], r: u32) -> Option<T> {
    if v.is_empty() {
        None
    } else {
        Some(v[r as usize % v.len()].clone())
    }
}

/// Stages that still have a loop nest of their own (not inlined).
fn live(s: &Schedule) -> Vec<String> {
    s.stages
        .iter()
        .filter(|st| st.attach != Attach::Inline)
        .map(|st| st.name.clone())
        .collect()
}

/// Whether some stage is computed at `stage.axis`.
fn is_attach_point(s: &Schedule, stage: &str, axis: &str) -> bool {
    s.stages
        .iter()
        .any(|st| matches!(&st.attach, Attach::At { stage: p, axis: a } if p == stage && a == axis))
}

/// Whether some stage is computed inside `stage`'s loops.
fn has_attached(s: &Schedule, stage: &str) -> bool {
    s.stages
        .iter()
        .any(|st| matches!(&st.attach, Attach::At { stage: p, .. } if p == stage))
}

/// Leaf axes of `stage` that no stage is attached at (split/fuse would remove them).
fn free_leaves(s: &Schedule, stage: &str) -> Vec<Axis> {
    s.leaf_axes(stage)
        .unwrap()
        .into_iter()
        .filter(|a| !is_attach_point(s, stage, &a.name))
        .collect()
}

fn kind_of(s: &Schedule, ax: &Axis) -> IterKind {
    let st = s.stage(ax.stage.as_str()).unwrap();
    st.axes[st.axis_index(&ax.name).unwrap()].kind
}

fn annotation_of(s: &Schedule, ax: &Axis) -> ForKind {
    let st = s.stage(ax.stage.as_str()).unwrap();
    st.axes[st.axis_index(&ax.name).unwrap()].annotation.clone()
}

/// Non-inlined stages that read `producer`, directly or through inlined stages.
fn consumers(s: &Schedule, producer: &str) -> Vec<String> {
    let mut out = vec![];
    let mut todo = vec![producer.to_string()];
    let mut seen = vec![];
    while let Some(p) = todo.pop() {
        for r in s.readers_of(&p) {
            if seen.contains(&r) {
                continue;
            }
            seen.push(r.clone());
            if s.stage(r.as_str()).unwrap().attach == Attach::Inline {
                todo.push(r);
            } else {
                out.push(r);
            }
        }
    }
    out
}

/// A permutation of `v` drawn from `seed`.
fn shuffle<T>(v: &mut [T], seed: u32) {
    let mut x = seed as u64 | 1;
    for i in (1..v.len()).rev() {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let j = (x >> 33) as usize % (i + 1);
        v.swap(i, j);
    }
}

/// The attach chain of `stage`: the `(stage, axis)` points it is computed in, innermost first.
fn attach_chain(s: &Schedule, stage: &str) -> Vec<(String, String)> {
    let mut out = vec![];
    let mut cur = stage.to_string();
    for _ in 0..s.stages.len() {
        match &s.stage(cur.as_str()).unwrap().attach {
            Attach::At { stage, axis } => {
                out.push((stage.clone(), axis.clone()));
                cur = stage.clone();
            }
            _ => break,
        }
    }
    out
}

/// Whether every `compute_at` of the schedule is placed where all the consumers of the
/// stage (also those that read it through inlined stages) run inside the attach loop, and
/// the attach loop is still a leaf of a stage that is not inlined.
fn attachments_consistent(s: &Schedule) -> bool {
    for st in &s.stages {
        let Attach::At { stage: p, axis } = &st.attach else {
            continue;
        };
        let ps = s.stage(p.as_str()).unwrap();
        if ps.attach == Attach::Inline {
            return false;
        }
        let Some(pos) = ps.axis_index(axis).and_then(|i| ps.leaf_pos(i)) else {
            return false;
        };
        for r in consumers(s, &st.name) {
            if &r == p {
                continue;
            }
            let inside = attach_chain(s, &r).iter().any(|(cs, cax)| {
                cs == p
                    && ps
                        .axis_index(cax)
                        .and_then(|i| ps.leaf_pos(i))
                        .map(|q| q >= pos)
                        .unwrap_or(false)
            });
            if !inside {
                return false;
            }
        }
    }
    true
}

/// Apply `op` to `s`. Returns a description of what was attempted (for the failure
/// message); a refusal by the schedule must be `Error::Schedule` and leaves the step out.
/// A step the schedule accepts but that leaves a stage computed outside one of its
/// consumers' loops (see `attachments_consistent`) is undone: such schedules are illegal,
/// and the primitives do not detect every case (reported separately).
fn apply(s: &mut Schedule, op: &Op) -> String {
    let mut next = s.clone();
    match try_apply(&mut next, op) {
        Ok(desc) if attachments_consistent(&next) => {
            *s = next;
            desc
        }
        Ok(desc) => format!(
            "{} (undone: a consumer would run outside an attach loop)",
            desc
        ),
        Err((desc, Error::Schedule { .. })) => {
            *s = next; // a refused primitive may have left a partial step (tile's first split)
            if !attachments_consistent(s) {
                panic!("{}: a refused step broke the attachments", desc);
            }
            format!("{} (refused)", desc)
        }
        Err((desc, e)) => panic!("{}: expected Ok or Error::Schedule, got {:?}", desc, e),
    }
}

type StepResult = std::result::Result<String, (String, Error)>;

fn try_apply(s: &mut Schedule, op: &Op) -> StepResult {
    let stages = live(s);
    let Some(st) = pick(&stages, op.a) else {
        return Ok("no live stage".into());
    };
    let st = st.as_str();
    let leaves = s.leaf_axes(st).unwrap();
    let free = free_leaves(s, st);
    macro_rules! chk {
        ($desc:expr, $e:expr) => {{
            let d: String = $desc;
            match $e {
                Ok(v) => v,
                Err(e) => return Err((d, e)),
            }
        }};
    }
    match op.kind {
        0 => {
            let Some(ax) = pick(&free, op.b) else {
                return Ok("split: no free leaf".into());
            };
            let f = 1 + (op.c % 9) as i64;
            if (op.c / 9) % 3 == 2 {
                // A shifted last block (refused on a stage with a reduction).
                let d = format!("split_shift_inwards({}, {}, {})", st, ax.name, f);
                chk!(d.clone(), s.split_shift_inwards(st, &ax, f));
                return Ok(d);
            }
            let d = format!("split({}, {}, {})", st, ax.name, f);
            chk!(d.clone(), s.split(st, &ax, f));
            Ok(d)
        }
        1 => {
            let Some(ax) = pick(&free, op.b) else {
                return Ok("split_nparts: no free leaf".into());
            };
            let n = 1 + (op.c % 9) as i64;
            let d = format!("split_nparts({}, {}, {})", st, ax.name, n);
            chk!(d.clone(), s.split_nparts(st, &ax, n));
            Ok(d)
        }
        2 => {
            if free.len() < 2 {
                return Ok("tile: fewer than two free leaves".into());
            }
            let x = op.b as usize % free.len();
            // Mostly neighbours (the usual tiling), sometimes any other free leaf.
            let y = if op.b & 0x100 == 0 && x + 1 < free.len() {
                x + 1
            } else {
                let mut y = (op.c >> 20) as usize % (free.len() - 1);
                if y >= x {
                    y += 1;
                }
                y
            };
            let (xf, yf) = (1 + (op.c % 9) as i64, 1 + ((op.c >> 8) % 9) as i64);
            let d = format!(
                "tile({}, {}, {}, {}, {})",
                st, free[x].name, free[y].name, xf, yf
            );
            chk!(d.clone(), s.tile(st, &free[x], &free[y], xf, yf));
            Ok(d)
        }
        3 => {
            let cands: Vec<usize> = (0..leaves.len().saturating_sub(1))
                .filter(|&p| {
                    kind_of(s, &leaves[p]) == kind_of(s, &leaves[p + 1])
                        && !is_attach_point(s, st, &leaves[p].name)
                        && !is_attach_point(s, st, &leaves[p + 1].name)
                })
                .collect();
            let Some(p) = pick(&cands, op.b) else {
                return Ok("fuse: no adjacent pair".into());
            };
            let d = format!("fuse({}, {}, {})", st, leaves[p].name, leaves[p + 1].name);
            chk!(d.clone(), s.fuse(st, &[&leaves[p], &leaves[p + 1]]));
            Ok(d)
        }
        4 => {
            let mut perm = leaves.clone();
            shuffle(&mut perm, op.b);
            let names: Vec<&str> = perm.iter().map(|a| a.name.as_str()).collect();
            let d = format!("reorder({}, {:?})", st, names);
            let refs: Vec<&Axis> = perm.iter().collect();
            chk!(d.clone(), s.reorder(st, &refs));
            Ok(d)
        }
        5 => {
            let Some(ax) = leaves
                .iter()
                .rev()
                .find(|a| kind_of(s, a) == IterKind::DataPar)
                .cloned()
            else {
                return Ok("vectorize: no data-parallel leaf".into());
            };
            let mut d = String::new();
            let mut target = ax.clone();
            if !op.b.is_multiple_of(3)
                && !is_attach_point(s, st, &ax.name)
                && annotation_of(s, &ax) == ForKind::Serial
            {
                d = format!("split({}, {}, 4); ", st, ax.name);
                let (_, inner) = chk!(d.clone(), s.split(st, &ax, 4));
                target = inner;
            }
            d += &format!("vectorize({}, {})", st, target.name);
            chk!(d.clone(), s.vectorize(st, &target));
            Ok(d)
        }
        6 => {
            // Unroll a short loop: split a free leaf by 2..=4 and unroll the inner part.
            let Some(ax) = pick(&free, op.b) else {
                return Ok("unroll: no free leaf".into());
            };
            let f = 2 + (op.c % 3) as i64;
            let mut d = format!("split({}, {}, {}); ", st, ax.name, f);
            let (_, inner) = chk!(d.clone(), s.split(st, &ax, f));
            d += &format!("unroll({}, {})", st, inner.name);
            chk!(d.clone(), s.unroll(st, &inner));
            Ok(d)
        }
        7 => {
            let data: Vec<Axis> = leaves
                .iter()
                .filter(|a| kind_of(s, a) == IterKind::DataPar)
                .cloned()
                .collect();
            let Some(ax) = pick(&data, op.b) else {
                return Ok("parallel: no data-parallel leaf".into());
            };
            let d = format!("parallel({}, {})", st, ax.name);
            chk!(d.clone(), s.parallel(st, &ax));
            Ok(d)
        }
        8 => {
            let cands: Vec<String> = s
                .stages
                .iter()
                .filter(|x| {
                    x.attach != Attach::Inline
                        && !x.is_output
                        && !x.is_reduction()
                        && x.op.num_outputs() == 1
                        && !has_attached(s, &x.name)
                })
                .map(|x| x.name.clone())
                .collect();
            let Some(p) = pick(&cands, op.b) else {
                return Ok("compute_inline: no candidate".into());
            };
            let d = format!("compute_inline({})", p);
            chk!(d.clone(), s.compute_inline(p.as_str()));
            Ok(d)
        }
        9 => {
            let producers: Vec<String> = s
                .stages
                .iter()
                .filter(|x| !x.is_output)
                .map(|x| x.name.clone())
                .collect();
            let Some(p) = pick(&producers, op.b) else {
                return Ok("compute_at: no producer".into());
            };
            let Some(cons) = pick(&consumers(s, &p), op.c) else {
                return Ok("compute_at: no consumer".into());
            };
            let cl = s.leaf_axes(cons.as_str()).unwrap();
            let ax = pick(&cl, op.c >> 8).unwrap();
            let d = format!("compute_at({}, {}, {})", p, cons, ax.name);
            chk!(d.clone(), s.compute_at(p.as_str(), cons.as_str(), &ax));
            Ok(d)
        }
        10 => {
            let mut tensors: Vec<String> =
                s.placeholders.iter().map(|p| p.op.name.clone()).collect();
            tensors.extend(stages.iter().cloned());
            tensors.retain(|t| !s.readers_of(t).is_empty());
            let Some(t) = pick(&tensors, op.b) else {
                return Ok("cache_read: no tensor with readers".into());
            };
            let readers = s.readers_of(&t);
            let mut chosen: Vec<String> = readers
                .iter()
                .enumerate()
                .filter(|(i, _)| op.c >> i & 1 == 1)
                .map(|(_, r)| r.clone())
                .collect();
            if chosen.is_empty() {
                chosen.push(readers[(op.c >> 16) as usize % readers.len()].clone());
            }
            let scope = ["local", "global", "shared"][(op.c >> 24) as usize % 3];
            let d = format!("cache_read({}, {}, {:?})", t, scope, chosen);
            let reader_tensors: Vec<Tensor> = chosen
                .iter()
                .map(|r| Tensor {
                    op: s.stage(r.as_str()).unwrap().op.clone(),
                    value_index: 0,
                })
                .collect();
            let refs: Vec<&Tensor> = reader_tensors.iter().collect();
            chk!(d.clone(), s.cache_read(t.as_str(), scope, &refs));
            Ok(d)
        }
        11 => {
            if has_attached(s, st) {
                return Ok("cache_write: stage has attached stages".into());
            }
            let scope = ["local", "global"][op.b as usize % 2];
            let d = format!("cache_write({}, {})", st, scope);
            chk!(d.clone(), s.cache_write(st, scope));
            Ok(d)
        }
        _ => {
            let all: Vec<String> = s.stages.iter().map(|x| x.name.clone()).collect();
            let p = pick(&all, op.b).unwrap();
            let d = format!("compute_root({})", p);
            chk!(d.clone(), s.compute_root(p.as_str()));
            Ok(d)
        }
    }
}

// ---------------------------------------------------------------- the property

const SENTINEL: f32 = 12345.0;

/// Inputs: deterministic random values; outputs: a sentinel (so an element a kernel
/// forgets to write shows).
fn arrays(comp: &Comp, seed: u64) -> Vec<NdArray> {
    comp.args
        .iter()
        .enumerate()
        .map(|(k, t)| {
            let sh = shape_of(t);
            if t.op.is_placeholder() {
                NdArray::random(&sh, t.dtype(), seed + k as u64)
            } else {
                NdArray::from_fn(&sh, |_| SENTINEL)
            }
        })
        .collect()
}

fn run(s: &Schedule, comp: &Comp, target: Target) -> std::result::Result<Vec<NdArray>, Error> {
    let k = build(s, &comp.args, target)?;
    let mut arrs = arrays(comp, 17);
    let mut refs: Vec<&mut NdArray> = arrs.iter_mut().collect();
    k.call(&mut refs)?;
    Ok(arrs)
}

fn check(comp: Comp, ops: &[Op]) -> std::result::Result<(), TestCaseError> {
    let base = create_schedule(&comp.outputs).unwrap();
    let want = run(&base, &comp, Target::interp())
        .unwrap_or_else(|e| panic!("{}: unscheduled run failed: {}", comp.name, e));

    let mut s = create_schedule(&comp.outputs).unwrap();
    let log: Vec<String> = ops.iter().map(|op| apply(&mut s, op)).collect();
    let ctx = format!("{} with [{}]", comp.name, log.join("; "));
    if std::env::var("LOOPFORGE_PROPTEST_LOG").is_ok() {
        eprintln!("CASE {}", ctx);
    }

    let f = lower(&s, &comp.args).unwrap_or_else(|e| panic!("{}: lower failed: {}", ctx, e));
    let text = f.to_string();

    for target in [Target::cpu(), Target::interp()] {
        let got = run(&s, &comp, target.clone())
            .unwrap_or_else(|e| panic!("{}: run on {:?} failed: {}\n{}", ctx, target, e, text));
        for (k, t) in comp.args.iter().enumerate() {
            if t.op.is_placeholder() {
                continue;
            }
            let d = got[k].max_abs_diff(&want[k]);
            prop_assert!(
                got[k].allclose(&want[k], 1e-4, 1e-4),
                "{}: output {} on {:?} differs from the unscheduled interpreter (max abs diff {})\n{}",
                ctx,
                t.name(),
                target,
                d,
                text
            );
        }
    }

    let json = s.trace_json();
    let replayed = Schedule::replay(&comp.outputs, &json)
        .unwrap_or_else(|e| panic!("{}: replay failed: {}\n{}", ctx, e, json));
    prop_assert_eq!(
        &replayed.trace,
        &s.trace,
        "{}: the replayed trace differs",
        ctx
    );
    let text2 = lower(&replayed, &comp.args)
        .unwrap_or_else(|e| panic!("{}: lowering the replayed schedule failed: {}", ctx, e))
        .to_string();
    prop_assert_eq!(
        text2,
        text,
        "{}: the replayed schedule lowers differently",
        ctx
    );
    Ok(())
}

fn config() -> ProptestConfig {
    let mut c = ProptestConfig::default();
    if std::env::var("PROPTEST_CASES").is_err() {
        c.cases = 64;
    }
    if std::env::var("PROPTEST_RNG_SEED").is_err() {
        c.rng_seed = RngSeed::Fixed(0x1005_f0e6);
    }
    c.failure_persistence = None;
    c.max_shrink_iters = 256;
    c
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn schedules_preserve_matmul(m in 1usize..=40, n in 1usize..=40, k in 1usize..=40, epi in any::<bool>(), ops in ops()) {
        check(matmul(m, n, k, epi), &ops)?;
    }

    #[test]
    fn schedules_preserve_conv2d(
        ci in 1usize..=3, co in 1usize..=3, kk in 2usize..=3, h in 0usize..=14, w in 0usize..=14,
        producer in any::<bool>(), ops in ops()
    ) {
        check(conv2d(ci, co, h + kk, w + kk, kk, producer), &ops)?;
    }

    #[test]
    fn schedules_preserve_elementwise_chains(n in 1usize..=40, m in 1usize..=40, variant in 0u8..3, ops in ops()) {
        check(elementwise(n, m, variant), &ops)?;
    }

    #[test]
    fn schedules_preserve_row_reductions(n in 1usize..=40, m in 1usize..=40, ops in ops()) {
        check(row_reduce(n, m), &ops)?;
    }

    #[test]
    fn schedules_preserve_softmax(n in 1usize..=40, m in 1usize..=40, ops in ops()) {
        check(softmax(n, m), &ops)?;
    }
}
