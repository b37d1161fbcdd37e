//! C identifiers for the generated CUDA source: every buffer, parameter and binding site
//! of the loop IR gets a distinct, valid identifier derived from its name (`i.outer` ->
//! `i_outer`, a second `inv3` -> `inv3_1`), never a C++ keyword, a CUDA built-in or one
//! of the generated helpers (`lf_*`).

use std::collections::HashSet;

/// Words the generated code must not use as variable names.
#[rustfmt::skip]
const RESERVED: &[&str] = &[
    // C++ keywords and common macros / types.
    "alignas", "alignof", "and", "asm", "auto", "bool", "break", "case", "catch", "char",
    "class", "const", "constexpr", "continue", "decltype", "default", "delete", "do",
    "double", "else", "enum", "explicit", "export", "extern", "false", "float", "for",
    "friend", "goto", "if", "inline", "int", "long", "mutable", "namespace", "new", "not",
    "noexcept", "nullptr", "operator", "or", "private", "protected", "public", "register",
    "return", "short", "signed", "sizeof", "static", "struct", "switch", "template", "this",
    "throw", "true", "try", "typedef", "typeid", "typename", "union", "unsigned", "using",
    "virtual", "void", "volatile", "while", "xor", "NULL", "main",
    // CUDA built-ins and the math functions the generated code calls.
    "threadIdx", "blockIdx", "blockDim", "gridDim", "warpSize", "min", "max", "llmin",
    "llmax", "abs", "llabs", "exp", "expf", "log", "logf", "log1p", "log1pf", "sqrt", "sqrtf", "tanh",
    "tanhf", "erf", "erff", "pow", "powf", "fabs", "fabsf", "floor", "floorf", "ceil",
    "ceilf", "fmod", "fmodf", "isnan", "signbit",
];

/// Hands out distinct C identifiers.
#[derive(Debug, Default)]
pub(crate) struct Namer {
    used: HashSet<String>,
}

impl Namer {
    /// A namer with the reserved words taken.
    pub(crate) fn new() -> Namer {
        Namer {
            used: RESERVED.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// A fresh identifier close to `hint`.
    pub(crate) fn fresh(&mut self, hint: &str) -> String {
        let base = sanitize(hint);
        let mut name = base.clone();
        let mut k = 1;
        while self.used.contains(&name) {
            name = format!("{}_{}", base, k);
            k += 1;
        }
        self.used.insert(name.clone());
        name
    }
}

/// `hint` as a valid C identifier: other characters become `_`; names that would be
/// reserved to the implementation (`_X`, `__x`), start with a digit, or clash with the
/// helpers' `lf_` prefix get a `v_` prefix.
pub(crate) fn sanitize(hint: &str) -> String {
    let mut s: String = hint
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        s.push('v');
    }
    let first = s.as_bytes()[0];
    if first.is_ascii_digit() || first == b'_' || s.starts_with("lf_") {
        s = format!("v_{}", s);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_and_distinct() {
        let mut n = Namer::new();
        assert_eq!(n.fresh("i.outer"), "i_outer");
        assert_eq!(n.fresh("i.outer"), "i_outer_1");
        assert_eq!(n.fresh("i_outer"), "i_outer_2");
        assert_eq!(n.fresh("float"), "float_1");
        assert_eq!(n.fresh("0x"), "v_0x");
        assert_eq!(n.fresh("_A"), "v__A");
        assert_eq!(n.fresh("lf_min"), "v_lf_min");
        assert_eq!(n.fresh(""), "v");
        assert_eq!(n.fresh("A.shared"), "A_shared");
    }
}
