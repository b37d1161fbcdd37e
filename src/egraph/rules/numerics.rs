//! Numerically safer forms: rewrites that remove overflow or cancellation, as Theano's
//! stabilization optimizations do. The extraction cost ([`crate::egraph::AlgebraCost`])
//! counts every `exp` whose argument may be positive (it may overflow) before anything
//! else, so these forms win whenever they apply.

use super::pv;
use crate::egraph::{LfGraph, LfRewrite};
use egg::{rewrite as rw, Id, Subst};

/// The class bound to `v` is not known to be `<= 0` (else the softplus rewrite would
/// apply to its own output, `exp(-|x|)`, without end, and gain nothing).
fn maybe_positive(v: &str) -> impl Fn(&mut LfGraph, Id, &Subst) -> bool + Send + Sync + 'static {
    let v = pv(v);
    move |eg: &mut LfGraph, _: Id, s: &Subst| !eg[s[v]].data.nonpos
}

/// The numerics rules.
pub fn rules() -> Vec<LfRewrite> {
    vec![
        // log(1 + x) = log1p(x) (log1p does not lose x where x is tiny)
        rw!("log1p"; "(log (+ 1.0 ?x))" => "(log1p ?x)"),
        // softplus: log(1 + e^x) = max(x, 0) + log(1 + e^-|x|). The left side overflows
        // once e^x does (x > 88.7 in f32, x > 709.8 in f64); on the right e^-|x| <= 1.
        rw!("softplus"; "(log1p (exp ?x))" => "(+ (max ?x 0.0) (log1p (exp (- 0.0 (abs ?x)))))"
            if maybe_positive("?x")),
        // log(sigmoid(x)) = -softplus(-x) = -(max(-x, 0) + log(1 + e^-|x|)); the left side
        // is log(0) = -inf once sigmoid(x) underflows (x < -103 in f32)
        rw!("log-sigmoid"; "(log (sigmoid ?x))"
            => "(- 0.0 (+ (max (- 0.0 ?x) 0.0) (log1p (exp (- 0.0 (abs ?x))))))"),
        // sqrt(x * x) = |x| (the left side overflows for |x| > 1.8e19 in f32 and
        // underflows to 0 for tiny x)
        rw!("sqrt-square"; "(sqrt (* ?x ?x))" => "(abs ?x)"),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::testing::{check_float_laws, eval_float, only};
    use super::*;
    use crate::egraph::{Domain, Lf};
    use crate::te::DType;
    use egg::RecExpr;
    use std::collections::HashMap;

    /// (rule, lhs, rhs, sample values of a0): the rule alone proves lhs = rhs, and where
    /// the left side is finite both sides agree to 1e-12 (relative above 1; the left side
    /// is the inaccurate one: log(sigmoid(30)) loses digits to 1 - 9e-14).
    const CASES: &[(&str, &str, &str, &[f64])] = &[
        (
            "log1p",
            "(log (+ 1.0 a0))",
            "(log1p a0)",
            &[-0.5, 0.0, 0.25, 100.0],
        ),
        (
            "softplus",
            "(log1p (exp a0))",
            "(+ (max a0 0.0) (log1p (exp (- 0.0 (abs a0)))))",
            &[-30.0, -1.0, 0.0, 1.0, 30.0, 700.0],
        ),
        (
            "log-sigmoid",
            "(log (sigmoid a0))",
            "(- 0.0 (+ (max (- 0.0 a0) 0.0) (log1p (exp (- 0.0 (abs a0))))))",
            &[-30.0, -1.0, 0.0, 1.0, 30.0],
        ),
        (
            "sqrt-square",
            "(sqrt (* a0 a0))",
            "(abs a0)",
            &[-3.0, 0.0, 1.5, 1e100],
        ),
    ];

    #[test]
    fn every_rule_proves_its_law_alone_and_the_law_holds() {
        check_float_laws(&rules(), CASES, |a, b| {
            (a - b).abs() <= 1e-12 * b.abs().max(1.0) || !a.is_finite()
        });
    }

    #[test]
    fn softplus_right_side_is_finite_where_the_left_overflows() {
        let l: RecExpr<Lf> = "(log1p (exp a0))".parse().unwrap();
        let r: RecExpr<Lf> = "(+ (max a0 0.0) (log1p (exp (- 0.0 (abs a0)))))"
            .parse()
            .unwrap();
        for (t, x) in [
            (DType::F64, 710.0),
            (DType::F64, 1000.0),
            (DType::F32, 100.0),
        ] {
            let env = HashMap::from([(0u32, x)]);
            assert!(eval_float(&l, t, &env).is_infinite());
            assert_eq!(eval_float(&r, t, &env), x);
        }
    }

    #[test]
    fn softplus_does_not_feed_on_itself() {
        // exp(-|x|) has a non-positive argument: the rule must not fire on it again, so
        // the e-graph saturates.
        let l: RecExpr<Lf> = "(log1p (exp a0))".parse().unwrap();
        let runner: egg::Runner<Lf, crate::egraph::LfAnalysis> =
            egg::Runner::new(crate::egraph::LfAnalysis {
                domain: Domain::Float(DType::F32),
                ranges: HashMap::new(),
            })
            .with_iter_limit(50)
            .with_expr(&l)
            .run(&only(&rules(), &["softplus"]));
        assert!(matches!(
            runner.stop_reason,
            Some(egg::StopReason::Saturated)
        ));
    }
}
