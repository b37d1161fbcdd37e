//! Index arithmetic over `int64`: ring laws, floor division and modulo, and decisions
//! from the ranges of loop variables. The set is kept small enough to saturate on the
//! index expressions of real kernels: sums are already in canonical linear form
//! (`simplify` ran first), so there is no distribution, factoring or subtraction
//! normalization (with associativity and commutativity those grow without end); the
//! rules are about the divisions `simplify` cannot see through. `/` and `%` are floor division and floor modulo
//! (`x / 0 = x % 0 = 0`). `int64` arithmetic wraps, and the integers modulo 2^64 are a
//! commutative ring, so the ring laws hold exactly; the division laws hold for the
//! values index expressions take (no overflow), which is what loop bounds guarantee.

use super::{konst, pv, range};
use crate::egraph::{LfGraph, LfRewrite};
use egg::{rewrite as rw, Id, Subst};

type CondFn = fn(&LfGraph, &Subst, [egg::Var; 2]) -> bool;

/// A condition on two pattern variables.
fn when(
    a: &str,
    b: &str,
    f: CondFn,
) -> impl Fn(&mut LfGraph, Id, &Subst) -> bool + Send + Sync + 'static {
    let (a, b) = (pv(a), pv(b));
    move |eg: &mut LfGraph, _: Id, s: &Subst| f(eg, s, [a, b])
}

fn nonzero(eg: &LfGraph, s: &Subst, v: [egg::Var; 2]) -> bool {
    konst(eg, s[v[0]]).is_some_and(|c| c != 0)
}
fn both_positive(eg: &LfGraph, s: &Subst, v: [egg::Var; 2]) -> bool {
    konst(eg, s[v[0]]).is_some_and(|c| c > 0) && konst(eg, s[v[1]]).is_some_and(|c| c > 0)
}
/// `v[1] > 0` and `v[1]` divides the constant `v[0]`.
fn divides(eg: &LfGraph, s: &Subst, v: [egg::Var; 2]) -> bool {
    match (konst(eg, s[v[0]]), konst(eg, s[v[1]])) {
        (Some(c), Some(d)) => d > 0 && c % d == 0,
        _ => false,
    }
}
/// Both positive and `v[1]` divides `v[0]`.
fn positive_divides(eg: &LfGraph, s: &Subst, v: [egg::Var; 2]) -> bool {
    both_positive(eg, s, v) && divides(eg, s, v)
}
/// `0 <= v[0] < v[1]` by the ranges, `v[1]` a constant.
fn in_period(eg: &LfGraph, s: &Subst, v: [egg::Var; 2]) -> bool {
    match (range(eg, s[v[0]]), konst(eg, s[v[1]])) {
        (Some((lo, hi)), Some(c)) => lo >= 0 && hi < c,
        _ => false,
    }
}
/// `v[0] <= v[1]` for every value in the ranges.
fn le_by_range(eg: &LfGraph, s: &Subst, v: [egg::Var; 2]) -> bool {
    match (range(eg, s[v[0]]), range(eg, s[v[1]])) {
        (Some(a), Some(b)) => a.1 <= b.0,
        _ => false,
    }
}
fn truthy(eg: &LfGraph, s: &Subst, v: [egg::Var; 2]) -> bool {
    konst(eg, s[v[0]]).is_some_and(|c| c != 0)
}
fn falsy(eg: &LfGraph, s: &Subst, v: [egg::Var; 2]) -> bool {
    konst(eg, s[v[0]]) == Some(0)
}

/// The index rules.
pub fn rules() -> Vec<LfRewrite> {
    vec![
        // ---- ring laws
        // a + b = b + a
        rw!("add-comm"; "(+ ?a ?b)" => "(+ ?b ?a)"),
        // (a + b) + c = a + (b + c)
        rw!("add-assoc"; "(+ (+ ?a ?b) ?c)" => "(+ ?a (+ ?b ?c))"),
        // a * b = b * a
        rw!("mul-comm"; "(* ?a ?b)" => "(* ?b ?a)"),
        // (a * b) * c = a * (b * c)
        rw!("mul-assoc"; "(* (* ?a ?b) ?c)" => "(* ?a (* ?b ?c))"),
        // a + 0 = a
        rw!("add-zero"; "(+ ?a 0)" => "?a"),
        // a * 1 = a
        rw!("mul-one"; "(* ?a 1)" => "?a"),
        // a * 0 = 0
        rw!("mul-zero"; "(* ?a 0)" => "0"),
        // a - a = 0
        rw!("sub-self"; "(- ?a ?a)" => "0"),
        // ---- floor division and modulo
        // x / 1 = x
        rw!("div-one"; "(/ ?x 1)" => "?x"),
        // x % 1 = 0
        rw!("mod-one"; "(% ?x 1)" => "0"),
        // c * (x / c) + x % c = x, for c != 0 (the definition of floor modulo)
        rw!("divmod-recombine"; "(+ (* (/ ?x ?c) ?c) (% ?x ?c))" => "?x"
            if when("?c", "?c", nonzero)),
        // (a*c + b) / c = a + b / c, for c != 0
        rw!("div-add-multiple"; "(/ (+ (* ?a ?c) ?b) ?c)" => "(+ ?a (/ ?b ?c))"
            if when("?c", "?c", nonzero)),
        // (a*c + b) % c = b % c, for c != 0
        rw!("mod-add-multiple"; "(% (+ (* ?a ?c) ?b) ?c)" => "(% ?b ?c)"
            if when("?c", "?c", nonzero)),
        // (a*c) / c = a, for c != 0
        rw!("div-mul-cancel"; "(/ (* ?a ?c) ?c)" => "?a" if when("?c", "?c", nonzero)),
        // (a*c) % c = 0 (also for c = 0: x % 0 = 0)
        rw!("mod-mul-zero"; "(% (* ?a ?c) ?c)" => "0"),
        // (a*c) / d = a*(c/d), for d > 0 dividing the constant c
        rw!("div-mul-divides"; "(/ (* ?a ?c) ?d)" => "(* ?a (/ ?c ?d))"
            if when("?c", "?d", divides)),
        // (a*c + b) / d = a*(c/d) + b/d, for d > 0 dividing the constant c
        rw!("div-add-divides"; "(/ (+ (* ?a ?c) ?b) ?d)" => "(+ (* ?a (/ ?c ?d)) (/ ?b ?d))"
            if when("?c", "?d", divides)),
        // (a*c + b) % d = b % d, for d > 0 dividing the constant c
        rw!("mod-add-divides"; "(% (+ (* ?a ?c) ?b) ?d)" => "(% ?b ?d)"
            if when("?c", "?d", divides)),
        // (x / a) / b = x / (a*b), for a, b > 0
        rw!("div-div"; "(/ (/ ?x ?a) ?b)" => "(/ ?x (* ?a ?b))" if when("?a", "?b", both_positive)),
        // (x % a) % b = x % b, for a, b > 0 with b dividing a
        rw!("mod-mod"; "(% (% ?x ?a) ?b)" => "(% ?x ?b)" if when("?a", "?b", positive_divides)),
        // (x % a) / b = (x / b) % (a / b), for a, b > 0 with b dividing a
        rw!("div-of-mod"; "(/ (% ?x ?a) ?b)" => "(% (/ ?x ?b) (/ ?a ?b))"
            if when("?a", "?b", positive_divides)),
        // ---- decisions from ranges
        // x / c = 0, when 0 <= x < c
        rw!("div-in-range"; "(/ ?x ?c)" => "0" if when("?x", "?c", in_period)),
        // x % c = x, when 0 <= x < c
        rw!("mod-in-range"; "(% ?x ?c)" => "?x" if when("?x", "?c", in_period)),
        // min(a, b) = a, when a <= b for all values in range
        rw!("min-by-range"; "(min ?a ?b)" => "?a" if when("?a", "?b", le_by_range)),
        // max(a, b) = b, when a <= b for all values in range
        rw!("max-by-range"; "(max ?a ?b)" => "?b" if when("?a", "?b", le_by_range)),
        // min(a, b) = min(b, a)
        rw!("min-comm"; "(min ?a ?b)" => "(min ?b ?a)"),
        // max(a, b) = max(b, a)
        rw!("max-comm"; "(max ?a ?b)" => "(max ?b ?a)"),
        // select(c, a, b) = a, when c is known true
        rw!("select-true"; "(select ?c ?a ?b)" => "?a" if when("?c", "?c", truthy)),
        // select(c, a, b) = b, when c is known false
        rw!("select-false"; "(select ?c ?a ?b)" => "?b" if when("?c", "?c", falsy)),
        // select(c, a, a) = a
        rw!("select-same"; "(select ?c ?a ?a)" => "?a"),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::testing::{int_law_holds, only, proves};
    use super::*;
    use crate::egraph::Domain;

    /// (rule, lhs, rhs, ranges of atoms, number of atoms): the rule alone proves it, and
    /// both sides agree on every value of the atoms (in their ranges, else -12..=12).
    #[allow(clippy::type_complexity)]
    const CASES: &[(&str, &str, &str, &[(u32, (i64, i64))], u32)] = &[
        ("add-comm", "(+ a0 a1)", "(+ a1 a0)", &[], 2),
        ("add-assoc", "(+ (+ a0 a1) a2)", "(+ a0 (+ a1 a2))", &[], 3),
        ("mul-comm", "(* a0 a1)", "(* a1 a0)", &[], 2),
        ("mul-assoc", "(* (* a0 a1) a2)", "(* a0 (* a1 a2))", &[], 3),
        ("add-zero", "(+ a0 0)", "a0", &[], 1),
        ("mul-one", "(* a0 1)", "a0", &[], 1),
        ("mul-zero", "(* a0 0)", "0", &[], 1),
        ("sub-self", "(- a0 a0)", "0", &[], 1),
        ("div-one", "(/ a0 1)", "a0", &[], 1),
        ("mod-one", "(% a0 1)", "0", &[], 1),
        (
            "divmod-recombine",
            "(+ (* (/ a0 7) 7) (% a0 7))",
            "a0",
            &[],
            1,
        ),
        (
            "divmod-recombine",
            "(+ (* (/ a0 -3) -3) (% a0 -3))",
            "a0",
            &[],
            1,
        ),
        (
            "div-add-multiple",
            "(/ (+ (* a0 5) a1) 5)",
            "(+ a0 (/ a1 5))",
            &[],
            2,
        ),
        (
            "mod-add-multiple",
            "(% (+ (* a0 5) a1) 5)",
            "(% a1 5)",
            &[],
            2,
        ),
        ("div-mul-cancel", "(/ (* a0 6) 6)", "a0", &[], 1),
        ("mod-mul-zero", "(% (* a0 6) 6)", "0", &[], 1),
        ("div-mul-divides", "(/ (* a0 12) 4)", "(* a0 3)", &[], 1),
        (
            "div-add-divides",
            "(/ (+ (* a0 12) a1) 4)",
            "(+ (* a0 3) (/ a1 4))",
            &[],
            2,
        ),
        (
            "mod-add-divides",
            "(% (+ (* a0 12) a1) 4)",
            "(% a1 4)",
            &[],
            2,
        ),
        ("div-div", "(/ (/ a0 3) 4)", "(/ a0 12)", &[], 1),
        ("mod-mod", "(% (% a0 12) 4)", "(% a0 4)", &[], 1),
        ("div-of-mod", "(/ (% a0 12) 4)", "(% (/ a0 4) 3)", &[], 1),
        ("div-in-range", "(/ a0 16)", "0", &[(0, (0, 15))], 1),
        ("mod-in-range", "(% a0 16)", "a0", &[(0, (0, 15))], 1),
        (
            "min-by-range",
            "(min a0 a1)",
            "a0",
            &[(0, (0, 3)), (1, (3, 9))],
            2,
        ),
        (
            "max-by-range",
            "(max a0 a1)",
            "a1",
            &[(0, (0, 3)), (1, (3, 9))],
            2,
        ),
        ("min-comm", "(min a0 a1)", "(min a1 a0)", &[], 2),
        ("max-comm", "(max a0 a1)", "(max a1 a0)", &[], 2),
        (
            "select-true",
            "(select (< a0 4) a1 a2)",
            "a1",
            &[(0, (0, 3))],
            3,
        ),
        (
            "select-false",
            "(select (< a0 4) a1 a2)",
            "a2",
            &[(0, (4, 9))],
            3,
        ),
        ("select-same", "(select (< a0 a1) a2 a2)", "a2", &[], 3),
    ];

    #[test]
    fn every_rule_proves_its_law_alone_and_the_law_holds() {
        let all = rules();
        for (name, lhs, rhs, ranges, n) in CASES {
            let r = only(&all, &[name]);
            assert!(
                proves(&r, Domain::Index, ranges, lhs, rhs),
                "{}: {} = {}",
                name,
                lhs,
                rhs
            );
            int_law_holds(lhs, rhs, ranges, *n);
        }
        // Every rule has a case.
        for r in &all {
            assert!(
                CASES.iter().any(|c| c.0 == r.name.as_str()),
                "rule {} has no test case",
                r.name
            );
        }
    }

    #[test]
    fn conditions_refuse_what_the_law_does_not_cover() {
        let all = rules();
        // Without a range for a0, (a0 / 16) is not 0.
        assert!(!proves(
            &only(&all, &["div-in-range"]),
            Domain::Index,
            &[],
            "(/ a0 16)",
            "0"
        ));
        // (x % 12) % 5: 5 does not divide 12.
        assert!(!proves(
            &only(&all, &["mod-mod"]),
            Domain::Index,
            &[],
            "(% (% a0 12) 5)",
            "(% a0 5)"
        ));
        // x / 0 is 0, so c * (x / c) + x % c = x needs c != 0.
        assert!(!proves(
            &only(&all, &["divmod-recombine"]),
            Domain::Index,
            &[],
            "(+ (* (/ a0 0) 0) (% a0 0))",
            "a0"
        ));
    }

    #[test]
    fn split_index_with_ranges() {
        // (i.outer*16 + i.inner) / 16 -> i.outer and % 16 -> i.inner, 0 <= i.inner < 16.
        let all = rules();
        let r = [(0, (0, 63)), (1, (0, 15))];
        assert!(proves(
            &all,
            Domain::Index,
            &r,
            "(/ (+ (* a0 16) a1) 16)",
            "a0"
        ));
        assert!(proves(
            &all,
            Domain::Index,
            &r,
            "(% (+ (* a0 16) a1) 16)",
            "a1"
        ));
    }
}
