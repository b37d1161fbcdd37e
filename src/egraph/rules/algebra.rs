//! Algebraic identities on float values, in the spirit of Theano's graph optimizer.
//! Only laws that hold exactly in IEEE arithmetic are used, with one documented
//! exception (`exp(log x) = x`); float `+` and `*` are commutative but not associative,
//! so there is no reassociation here.

use crate::egraph::LfRewrite;
use egg::rewrite as rw;

/// The algebra rules.
pub fn rules() -> Vec<LfRewrite> {
    vec![
        // a + b = b + a (exact in IEEE arithmetic)
        rw!("fadd-comm"; "(+ ?a ?b)" => "(+ ?b ?a)"),
        // a * b = b * a (exact in IEEE arithmetic)
        rw!("fmul-comm"; "(* ?a ?b)" => "(* ?b ?a)"),
        // a * 1 = a (exact)
        rw!("fmul-one"; "(* ?a 1.0)" => "?a"),
        // a - 0 = a (exact, -0 - 0 = -0 included)
        rw!("fsub-zero"; "(- ?a 0.0)" => "?a"),
        // exp(log x) = x. Holds for x >= 0 (up to rounding). For x < 0 the original is NaN
        // (log of a negative number) and the rewrite gives x: like Theano, loopforge
        // assumes programs only take logarithms where they are defined.
        rw!("exp-log"; "(exp (log ?x))" => "?x"),
        // log(exp x) = x (the original overflows to inf once exp(x) does; the rewrite is
        // exact where it does not)
        rw!("log-exp"; "(log (exp ?x))" => "?x"),
        // pow(x, 2) = x * x (both correctly rounded)
        rw!("pow-two"; "(pow ?x 2.0)" => "(* ?x ?x)"),
        // pow(x, 1) = x
        rw!("pow-one"; "(pow ?x 1.0)" => "?x"),
        // |(|x|)| = |x|
        rw!("abs-abs"; "(abs (abs ?x))" => "(abs ?x)"),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::testing::check_float_laws;
    use super::*;

    /// (rule, lhs, rhs, sample values of a0 where the law is claimed).
    const CASES: &[(&str, &str, &str, &[f64])] = &[
        ("fadd-comm", "(+ a0 2.5)", "(+ 2.5 a0)", &[-3.0, 0.0, 1.5]),
        ("fmul-comm", "(* a0 2.5)", "(* 2.5 a0)", &[-3.0, 0.0, 1.5]),
        ("fmul-one", "(* a0 1.0)", "a0", &[-3.0, -0.0, 7.25]),
        ("fsub-zero", "(- a0 0.0)", "a0", &[-3.0, -0.0, 7.25]),
        (
            "exp-log",
            "(exp (log a0))",
            "a0",
            &[0.0, 1e-30, 0.5, 3.0, 1e30],
        ),
        ("log-exp", "(log (exp a0))", "a0", &[-20.0, 0.0, 0.5, 30.0]),
        (
            "pow-two",
            "(pow a0 2.0)",
            "(* a0 a0)",
            &[-3.0, 0.0, 1.5, 1e10],
        ),
        ("pow-one", "(pow a0 1.0)", "a0", &[-3.0, 0.0, 1.5]),
        ("abs-abs", "(abs (abs a0))", "(abs a0)", &[-3.0, 0.0, 1.5]),
    ];

    #[test]
    fn every_rule_proves_its_law_alone_and_the_law_holds() {
        check_float_laws(&rules(), CASES, |a, b| {
            (a - b).abs() <= 1e-12 * b.abs().max(1e-300)
        });
    }
}
