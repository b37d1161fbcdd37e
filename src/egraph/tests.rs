//! Tests of the conversion, the two entry points, the limits, and a property test:
//! random index expressions simplified under random ranges evaluate equal to the
//! originals at every point of the ranges.

use super::*;
use crate::te::arith::int_binary;
use crate::te::{exp, floordiv, floormod, log, log1p, lt, pow, select, Var};
use proptest::prelude::*;

fn ranges(vs: &[(&Var, i64, i64)]) -> impl Fn(u64) -> Option<(i64, i64)> {
    let m: HashMap<u64, (i64, i64)> = vs.iter().map(|(v, a, b)| (v.id(), (*a, *b))).collect();
    move |id| m.get(&id).copied()
}

#[test]
fn conversion_round_trips() {
    let i = Var::new("i", DType::I64);
    let j = Var::new("j", DType::I64);
    let e = select(
        lt(floordiv(i.expr() * 16 + j.expr(), 16), 7),
        floormod(i.expr() - j.expr(), 5),
        crate::te::min(i.expr(), j.expr()),
    );
    let c = to_rec(&e, Domain::Index).unwrap();
    let back = from_rec(&c.rec, &c.atoms, Domain::Index, e.dtype());
    assert!(back.structural_eq(&e), "{} vs {}", back, e);
    // Not an index expression: nothing to convert.
    assert!(to_rec(&Expr::float_of(1.0, DType::F32), Domain::Index).is_none());
}

#[test]
fn split_index_div_and_mod_vanish_with_ranges() {
    let io = Var::new("i.outer", DType::I64);
    let ii = Var::new("i.inner", DType::I64);
    let r = ranges(&[(&io, 0, 63), (&ii, 0, 15)]);
    let l = Limits::default();
    let (d, rep) = simplify_index(&floordiv(io.expr() * 16 + ii.expr(), 16), &r, &l);
    assert_eq!(d.to_string(), "i.outer");
    let rep = rep.unwrap();
    assert_eq!(rep.stop, Stop::Saturated, "{}", rep);
    assert!(rep.rewritten);
    let (m, _) = simplify_index(&floormod(io.expr() * 16 + ii.expr(), 16), &r, &l);
    assert_eq!(m.to_string(), "i.inner");
}

#[test]
fn fused_axis_flattened_index_recombines() {
    // What storage_flatten makes of C[fused / 19, fused % 19] on a [37, 19] buffer.
    let fo = Var::new("fo", DType::I64);
    let fi = Var::new("fi", DType::I64);
    let x = fo.expr() * 16 + fi.expr();
    let e = floordiv(x.clone(), 19) * 19 + floormod(x, 19);
    let (s, rep) = simplify_index(
        &e,
        &ranges(&[(&fo, 0, 42), (&fi, 0, 15)]),
        &Limits::default(),
    );
    assert_eq!(
        crate::lower::simplify::simplify(&s).to_string(),
        "fo * 16 + fi"
    );
    assert_eq!(rep.unwrap().stop, Stop::Saturated);
}

#[test]
fn nested_divisions_merge_and_needed_ones_stay() {
    let x = Var::new("x", DType::I64);
    let none = |_: u64| None;
    let l = Limits::default();
    let (s, _) = simplify_index(&floordiv(floordiv(x.expr(), 4), 8), &none, &l);
    assert_eq!(s.to_string(), "floordiv(x, 32)");
    let (s, _) = simplify_index(&floormod(floormod(x.expr(), 12), 4), &none, &l);
    assert_eq!(s.to_string(), "floormod(x, 4)");
    // Nothing cheaper: the very same expression comes back, reported not rewritten.
    let e = floordiv(x.expr(), 7);
    let (s, rep) = simplify_index(&e, &none, &l);
    assert!(s.same_as(&e));
    assert!(!rep.unwrap().rewritten);
}

#[test]
fn limits_are_respected_and_reported() {
    // A sum of 12 terms under a division: associativity and commutativity alone make
    // thousands of classes.
    let vs: Vec<Var> = (0..12)
        .map(|k| Var::new(format!("v{}", k), DType::I64))
        .collect();
    let sum = vs
        .iter()
        .enumerate()
        .fold(Expr::int(0), |acc, (k, v)| acc + v.expr() * (k as i64 + 2));
    let e = floordiv(sum, 7);
    let none = |_: u64| None;
    let small = Limits {
        nodes: 2_000,
        iterations: 1_000,
        time: Duration::from_secs(60),
    };
    let (_, rep) = simplify_index(&e, &none, &small);
    let rep = rep.unwrap();
    assert_eq!(rep.stop, Stop::NodeLimit(2_000), "{}", rep);
    let few = Limits {
        nodes: 1_000_000,
        iterations: 2,
        time: Duration::from_secs(60),
    };
    let (_, rep2) = simplify_index(&e, &none, &few);
    let rep2 = rep2.unwrap();
    assert_eq!(rep2.stop, Stop::IterationLimit(2), "{}", rep2);
    let mut s = Summary::default();
    s.push(rep);
    s.push(rep2);
    let text = s.to_string();
    assert!(
        text.contains("1 stopped by the node limit (2000)"),
        "{}",
        text
    );
    assert!(
        text.contains("1 stopped by the iteration limit (2)"),
        "{}",
        text
    );
}

#[test]
fn softplus_is_rewritten_to_a_form_without_overflow() {
    let x = Var::new("x", DType::F64);
    let e = log(1.0f64 + exp(x.expr()));
    let (s, rep) = rewrite_algebra(&e, &Limits::default());
    let rep = rep.unwrap();
    assert_eq!(rep.stop, Stop::Saturated, "{}", rep);
    assert!(rep.rewritten);
    assert_eq!(
        s.to_string(),
        "max(x, 0.0) + log1p(exp(0.0 - abs(x)))",
        "{}",
        s
    );
    // log1p written directly is rewritten the same way.
    let (s2, _) = rewrite_algebra(&log1p(exp(x.expr())), &Limits::default());
    assert_eq!(s2.to_string(), s.to_string());
}

#[test]
fn exp_log_and_pow_two() {
    let x = Var::new("x", DType::F32);
    let (s, _) = rewrite_algebra(&exp(log(x.expr())), &Limits::default());
    assert_eq!(s.to_string(), "x");
    let (s, _) = rewrite_algebra(&pow(x.expr(), 2.0f32), &Limits::default());
    assert_eq!(s.to_string(), "x * x");
}

#[test]
fn common_subexpressions_are_bound_once() {
    let a = Var::new("a", DType::F32);
    let b = Var::new("b", DType::F32);
    let sum = a.expr() + b.expr();
    // pow(a + b, 2) -> let cse0 = a + b in cse0 * cse0
    let (s, _) = rewrite_algebra(&pow(sum.clone(), 2.0f32), &Limits::default());
    assert_eq!(s.to_string(), "(let cse0 = a + b in cse0 * cse0)");
    // A repeated subexpression in the original is shared too.
    let e = exp(sum.clone()) * 2.0f32 + exp(sum);
    let (s, rep) = rewrite_algebra(&e, &Limits::default());
    assert!(rep.unwrap().rewritten);
    assert!(
        s.to_string().starts_with("(let cse0 = exp(a + b) in"),
        "{}",
        s
    );
}

#[test]
fn nothing_to_gain_returns_the_same_expression() {
    let a = Var::new("a", DType::F32);
    let b = Var::new("b", DType::F32);
    let e = a.expr() * b.expr() + exp(a.expr());
    let (s, rep) = rewrite_algebra(&e, &Limits::default());
    assert!(s.same_as(&e));
    assert!(!rep.unwrap().rewritten);
    // Integer values are not the algebra pass's domain.
    assert!(rewrite_algebra(&(Expr::int(1) + 2), &Limits::default())
        .1
        .is_none());
}

// ---------------------------------------------------------------- property test

fn eval(e: &Expr, env: &HashMap<u64, i64>) -> i64 {
    let k = |i: usize| eval(e.children()[i], env);
    match e.node() {
        ExprNode::Int(v, _) => *v,
        ExprNode::Var(v) => env[&v.id()],
        ExprNode::Binary(op, ..) => int_binary(*op, DType::I64, k(0), k(1)),
        ExprNode::Cmp(op, ..) => crate::te::arith::compare(*op, k(0), k(1)) as i64,
        ExprNode::Select(..) => {
            if k(0) != 0 {
                k(1)
            } else {
                k(2)
            }
        }
        ExprNode::Let(v, val, body) => {
            let mut env2 = env.clone();
            env2.insert(v.id(), eval(val, env));
            eval(body, &env2)
        }
        other => panic!("unexpected {:?}", other),
    }
}

/// A random index expression over `vars`, built from a seed (split/fuse-like shapes are
/// more likely than uniform trees).
fn random_index(seed: &mut u64, vars: &[Var], depth: u32) -> Expr {
    let mut next = |n: u64| {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*seed >> 33) % n
    };
    let c = next(6) as i64 + 2;
    if depth == 0 || next(4) == 0 {
        return if next(5) == 0 {
            Expr::int(next(20) as i64 - 5)
        } else {
            vars[next(vars.len() as u64) as usize].expr()
        };
    }
    let pick = next(9);
    let a = random_index(seed, vars, depth - 1);
    let b = random_index(seed, vars, depth - 1);
    match pick {
        0 => a + b,
        1 => a - b,
        2 => a * c,
        3 => floordiv(a, c),
        4 => floormod(a, c),
        5 => a * c + b,
        6 => floordiv(a.clone(), c) * c + floormod(a, c) + b,
        7 => floordiv(floormod(a, c * 2), c),
        _ => crate::te::min(a, b),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn simplified_index_expressions_evaluate_equal(
        seed in any::<u64>(),
        r0 in 1i64..6, r1 in 1i64..9, r2 in 1i64..5, lo in -3i64..2,
    ) {
        let vars: Vec<Var> = ["x", "y", "z"].iter().map(|n| Var::new(*n, DType::I64)).collect();
        let rg = [(lo, lo + r0), (0, r1), (0, r2)];
        let mut s = seed;
        let e = random_index(&mut s, &vars, 4);
        let m: HashMap<u64, (i64, i64)> =
            vars.iter().zip(rg).map(|(v, r)| (v.id(), r)).collect();
        let limits = Limits { nodes: 5_000, iterations: 12, time: Duration::from_secs(60) };
        let (out, _) = simplify_index(&e, &|id| m.get(&id).copied(), &limits);
        for x in rg[0].0..=rg[0].1 {
            for y in rg[1].0..=rg[1].1 {
                for z in rg[2].0..=rg[2].1 {
                    let env: HashMap<u64, i64> =
                        [(vars[0].id(), x), (vars[1].id(), y), (vars[2].id(), z)].into();
                    prop_assert_eq!(eval(&e, &env), eval(&out, &env),
                        "{} -> {} at x={} y={} z={}", e, out, x, y, z);
                }
            }
        }
    }
}
