//! The rewrite rules, grouped by topic, one file per topic. Every rule has its law as a
//! comment above it and a unit test in its file (the rule alone proves its own example,
//! and both sides evaluate equal on sample values).
//!
//! * [`index`] — `int64` index arithmetic with floor division and modulo (range-aware);
//! * [`algebra`] — algebraic identities on float values (Theano's optimizer in spirit);
//! * [`numerics`] — rewrites that avoid overflow and cancellation (`log1p`, softplus).

pub mod algebra;
pub mod index;
pub mod numerics;

use super::{LfGraph, LfRewrite};
use egg::{Id, Var};
use std::sync::OnceLock;

/// The index rules, built once.
pub fn index_rules() -> &'static [LfRewrite] {
    static R: OnceLock<Vec<LfRewrite>> = OnceLock::new();
    R.get_or_init(index::rules)
}

/// The value rules (algebra and numerics), built once.
pub fn algebra_rules() -> &'static [LfRewrite] {
    static R: OnceLock<Vec<LfRewrite>> = OnceLock::new();
    R.get_or_init(|| {
        let mut r = algebra::rules();
        r.extend(numerics::rules());
        r
    })
}

/// A pattern variable (`"?x"`).
pub(crate) fn pv(s: &str) -> Var {
    s.parse().expect("pattern variable")
}

/// The integer constant of a class, if the analysis knows it.
pub(crate) fn konst(eg: &LfGraph, id: Id) -> Option<i64> {
    eg[id].data.constant()
}

/// The integer range of a class, if the analysis knows it.
pub(crate) fn range(eg: &LfGraph, id: Id) -> Option<(i64, i64)> {
    eg[id].data.range
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers of the rule tests: prove an equality with chosen rules, and evaluate both
    //! sides of a law on sample values.
    use super::super::analysis::bin_op;
    use super::super::{Atom, Lf};
    use super::super::{Domain, LfAnalysis, LfRewrite};
    use crate::te::arith::{float_binary, int_binary, math_float};
    use crate::te::{DType, MathFn};
    use egg::{Language, RecExpr, Runner};
    use std::collections::HashMap;

    /// The float laws `(rule, lhs, rhs, sample values of a0)`: each rule of `all` alone
    /// proves its law, both sides agree at the samples (`agree(lhs, rhs)`), and every rule
    /// has a case.
    pub fn check_float_laws(
        all: &[LfRewrite],
        cases: &[(&str, &str, &str, &[f64])],
        agree: impl Fn(f64, f64) -> bool,
    ) {
        for (name, lhs, rhs, xs) in cases {
            let r = only(all, &[name]);
            assert!(
                proves(&r, Domain::Float(DType::F64), &[], lhs, rhs),
                "{}: {} = {}",
                name,
                lhs,
                rhs
            );
            let (l, rr): (RecExpr<Lf>, RecExpr<Lf>) = (lhs.parse().unwrap(), rhs.parse().unwrap());
            for x in *xs {
                let env = HashMap::from([(0u32, *x)]);
                let (a, b) = (
                    eval_float(&l, DType::F64, &env),
                    eval_float(&rr, DType::F64, &env),
                );
                assert!(agree(a, b), "{} at {}: {} vs {}", name, x, a, b);
            }
        }
        for r in all {
            assert!(
                cases.iter().any(|c| c.0 == r.name.as_str()),
                "rule {} untested",
                r.name
            );
        }
    }

    /// Whether `rules` prove `lhs = rhs` (atoms `a0`, `a1`... with `ranges`).
    pub fn proves(
        rules: &[LfRewrite],
        domain: Domain,
        ranges: &[(u32, (i64, i64))],
        lhs: &str,
        rhs: &str,
    ) -> bool {
        let l: RecExpr<Lf> = lhs.parse().unwrap();
        let r: RecExpr<Lf> = rhs.parse().unwrap();
        let analysis = LfAnalysis {
            domain,
            ranges: ranges.iter().copied().collect(),
        };
        let runner: Runner<Lf, LfAnalysis> = Runner::new(analysis)
            .with_iter_limit(20)
            .with_node_limit(20_000)
            .with_time_limit(std::time::Duration::from_secs(10))
            .with_expr(&l)
            .run(rules);
        let eg = &runner.egraph;
        match eg.lookup_expr(&r) {
            Some(id) => eg.find(id) == eg.find(runner.roots[0]),
            None => false,
        }
    }

    /// The rules of `all` named `names`.
    pub fn only(all: &[LfRewrite], names: &[&str]) -> Vec<LfRewrite> {
        let v: Vec<LfRewrite> = all
            .iter()
            .filter(|r| names.contains(&r.name.as_str()))
            .cloned()
            .collect();
        assert_eq!(v.len(), names.len(), "unknown rule among {:?}", names);
        v
    }

    /// Evaluate an index expression (`int64` floor semantics, booleans 0/1).
    pub fn eval_int(e: &RecExpr<Lf>, atoms: &HashMap<u32, i64>) -> i64 {
        let mut v: Vec<i64> = vec![];
        for n in e.as_ref() {
            let k = |i: usize| v[usize::from(n.children()[i])];
            let x = match n {
                Lf::Num(c) => *c,
                Lf::Atom(Atom(a)) => atoms[a],
                Lf::Lt(_) => (k(0) < k(1)) as i64,
                Lf::Le(_) => (k(0) <= k(1)) as i64,
                Lf::Gt(_) => (k(0) > k(1)) as i64,
                Lf::Ge(_) => (k(0) >= k(1)) as i64,
                Lf::Eq(_) => (k(0) == k(1)) as i64,
                Lf::Ne(_) => (k(0) != k(1)) as i64,
                Lf::And(_) => (k(0) != 0 && k(1) != 0) as i64,
                Lf::Or(_) => (k(0) != 0 || k(1) != 0) as i64,
                Lf::Not(_) => (k(0) == 0) as i64,
                Lf::Select(_) => {
                    if k(0) != 0 {
                        k(1)
                    } else {
                        k(2)
                    }
                }
                other => int_binary(
                    bin_op(other).expect("integer operator"),
                    DType::I64,
                    k(0),
                    k(1),
                ),
            };
            v.push(x);
        }
        *v.last().unwrap()
    }

    /// Evaluate a float expression in type `t` (the runtime's semantics).
    pub fn eval_float(e: &RecExpr<Lf>, t: DType, atoms: &HashMap<u32, f64>) -> f64 {
        let mut v: Vec<f64> = vec![];
        for n in e.as_ref() {
            let k = |i: usize| v[usize::from(n.children()[i])];
            let m = |f: MathFn| math_float(f, t, k(0), if n.len() > 1 { k(1) } else { 0.0 });
            let x = match n {
                Lf::Flt(c) => c.get(),
                Lf::Num(c) => *c as f64,
                Lf::Atom(Atom(a)) => atoms[a],
                Lf::Exp(_) => m(MathFn::Exp),
                Lf::Log(_) => m(MathFn::Log),
                Lf::Log1p(_) => m(MathFn::Log1p),
                Lf::Sqrt(_) => m(MathFn::Sqrt),
                Lf::Tanh(_) => m(MathFn::Tanh),
                Lf::Sigmoid(_) => m(MathFn::Sigmoid),
                Lf::Erf(_) => m(MathFn::Erf),
                Lf::Abs(_) => m(MathFn::Abs),
                Lf::Floor(_) => m(MathFn::Floor),
                Lf::Ceil(_) => m(MathFn::Ceil),
                Lf::Pow(_) => m(MathFn::Pow),
                other => {
                    let op = bin_op(other).expect("float operator");
                    float_binary(op, t, k(0), k(1))
                }
            };
            v.push(x);
        }
        *v.last().unwrap()
    }

    /// Check an index law on every value of the atoms in their ranges (or -12..=12).
    pub fn int_law_holds(lhs: &str, rhs: &str, ranges: &[(u32, (i64, i64))], atoms: u32) {
        let l: RecExpr<Lf> = lhs.parse().unwrap();
        let r: RecExpr<Lf> = rhs.parse().unwrap();
        let rg: HashMap<u32, (i64, i64)> = ranges.iter().copied().collect();
        let mut env: HashMap<u32, i64> = HashMap::new();
        fn rec(
            k: u32,
            n: u32,
            rg: &HashMap<u32, (i64, i64)>,
            env: &mut HashMap<u32, i64>,
            f: &mut dyn FnMut(&HashMap<u32, i64>),
        ) {
            if k == n {
                return f(env);
            }
            let (lo, hi) = rg.get(&k).copied().unwrap_or((-12, 12));
            for v in lo..=hi {
                env.insert(k, v);
                rec(k + 1, n, rg, env, f);
            }
        }
        rec(0, atoms, &rg, &mut env, &mut |env| {
            assert_eq!(
                eval_int(&l, env),
                eval_int(&r, env),
                "{} vs {} at {:?}",
                lhs,
                rhs,
                env
            );
        });
    }
}
