//! E-graph simplification with [`egg`] (equality saturation).
//!
//! Two uses, each a lowering pass:
//!
//! * **Index arithmetic** ([`simplify_index`], the `egraph_index` pass): integer (`int64`)
//!   expressions that still hold floor division or modulo after the hand-written
//!   canonicalizer (`lower::simplify`) are saturated with the rules of [`rules::index`],
//!   knowing the ranges of the loop variables ([`analysis`]), and replaced by the cheapest
//!   equivalent under [`IndexCost`] (fewest `/` and `%`, then fewest nodes) when that is
//!   cheaper than the original: `floordiv(x, 19) * 19 + floormod(x, 19) -> x`,
//!   `(i.outer*16 + i.inner) / 16 -> i.outer` when `0 <= i.inner < 16`.
//! * **Algebra on values** ([`rewrite_algebra`], the TE-level `egraph_algebra` pass):
//!   float expressions of compute bodies are saturated with [`rules::algebra`] and
//!   [`rules::numerics`] (Theano's optimizer in spirit: `exp(log x) -> x`,
//!   `pow(x, 2) -> x*x`, `log(1 + exp(x))` to a form that does not overflow), extracted
//!   under [`AlgebraCost`] (no `exp` that may overflow, then cheap operations), and
//!   subexpressions the extracted DAG uses twice are bound once with `let`.
//!
//! Anything outside a domain (loads, tensor reads, casts, other types) is an opaque
//! *atom*: a leaf the rules never look into, reconstructed unchanged. Every run has node,
//! iteration and time limits ([`Limits`]); the reason a run stopped is in its
//! [`RunReport`] and, summed over a pass ([`Summary`]), in the IR dumps.
//! The result does not depend on the time limit in normal cases: the defaults let
//! typical kernels saturate in a few iterations and a few hundred nodes.

pub mod analysis;
pub mod rules;

pub use analysis::{Facts, LfAnalysis};

use crate::te::{BinOp, CmpOp, DType, Expr, ExprNode, MathFn, Var};
use egg::{define_language, CostFunction, EGraph, Extractor, Id, Language, RecExpr, Runner};
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A float constant in the e-graph: the bits of an `f64` (so it can be hashed and ordered;
/// `-0.0` and `0.0` are different constants, as they are different values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Float(pub u64);

impl Float {
    /// The constant `v`.
    pub fn new(v: f64) -> Float {
        Float(v.to_bits())
    }
    /// Its value.
    pub fn get(self) -> f64 {
        f64::from_bits(self.0)
    }
}
impl FromStr for Float {
    type Err = String;
    fn from_str(s: &str) -> Result<Float, String> {
        // Integers are `Num`: a float constant is written with a point (`1.0`), an
        // exponent, or as inf/NaN.
        let floaty = s.contains('.') || s.contains('e') || s.ends_with("inf") || s == "NaN";
        match s.parse::<f64>() {
            Ok(v) if floaty => Ok(Float::new(v)),
            _ => Err(format!("not a float constant: {}", s)),
        }
    }
}
impl fmt::Display for Float {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.get())
    }
}

/// An opaque leaf: the index of an expression in the conversion's atom table (printed
/// `a0`, `a1`, ...). Numbered per conversion, so results never depend on what other
/// conversions ran before (unlike interned symbols).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Atom(pub u32);

impl FromStr for Atom {
    type Err = String;
    fn from_str(s: &str) -> Result<Atom, String> {
        s.strip_prefix('a')
            .and_then(|n| n.parse().ok())
            .map(Atom)
            .ok_or_else(|| format!("not an atom: {}", s))
    }
}
impl fmt::Display for Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a{}", self.0)
    }
}

define_language! {
    /// The e-graph's language: loopforge's scalar operators over one value type (the
    /// domain's: `int64` for indices, one float type for values) plus booleans.
    /// Integer `/` and `%` are floor division and modulo (0 for a zero divisor); float
    /// `%` is `fmod`.
    pub enum Lf {
        "+" = Add([Id; 2]),
        "-" = Sub([Id; 2]),
        "*" = Mul([Id; 2]),
        "/" = Div([Id; 2]),
        "%" = Mod([Id; 2]),
        "min" = Min([Id; 2]),
        "max" = Max([Id; 2]),
        "==" = Eq([Id; 2]),
        "!=" = Ne([Id; 2]),
        "<" = Lt([Id; 2]),
        "<=" = Le([Id; 2]),
        ">" = Gt([Id; 2]),
        ">=" = Ge([Id; 2]),
        "&&" = And([Id; 2]),
        "||" = Or([Id; 2]),
        "!" = Not([Id; 1]),
        "select" = Select([Id; 3]),
        "exp" = Exp([Id; 1]),
        "log" = Log([Id; 1]),
        "log1p" = Log1p([Id; 1]),
        "sqrt" = Sqrt([Id; 1]),
        "tanh" = Tanh([Id; 1]),
        "sigmoid" = Sigmoid([Id; 1]),
        "erf" = Erf([Id; 1]),
        "abs" = Abs([Id; 1]),
        "floor" = Floor([Id; 1]),
        "ceil" = Ceil([Id; 1]),
        "pow" = Pow([Id; 2]),
        Num(i64),
        Flt(Float),
        Atom(Atom),
    }
}

/// The e-graph type of this module.
pub type LfGraph = EGraph<Lf, LfAnalysis>;
/// A rewrite rule of this module.
pub type LfRewrite = egg::Rewrite<Lf, LfAnalysis>;

/// What a run reasons about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Domain {
    /// `int64` index arithmetic (floor division and modulo), with booleans over it.
    Index,
    /// Values of one float type, with booleans over them.
    Float(DType),
}

impl Domain {
    /// The value type of the domain.
    pub fn dtype(self) -> DType {
        match self {
            Domain::Index => DType::I64,
            Domain::Float(t) => t,
        }
    }
}

// ---------------------------------------------------------------- limits and reports

/// Limits of one e-graph run. All three are always set: associativity and commutativity
/// alone can grow an e-graph without end.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// Stop once the e-graph holds more e-nodes than this.
    pub nodes: usize,
    /// Stop after this many iterations (each applies every rule once).
    pub iterations: usize,
    /// Stop after this much time (a safety net; the defaults let normal kernels saturate
    /// long before it, so results do not depend on the machine's speed).
    pub time: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            nodes: 10_000,
            iterations: 30,
            time: Duration::from_secs(5),
        }
    }
}

impl Limits {
    /// The defaults, overridden by `LOOPFORGE_EGRAPH_NODES`, `LOOPFORGE_EGRAPH_ITERS` and
    /// `LOOPFORGE_EGRAPH_TIME_MS` where they are set to numbers.
    pub fn from_env() -> Limits {
        let mut l = Limits::default();
        let num = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
        if let Some(n) = num("LOOPFORGE_EGRAPH_NODES") {
            l.nodes = n as usize;
        }
        if let Some(n) = num("LOOPFORGE_EGRAPH_ITERS") {
            l.iterations = n as usize;
        }
        if let Some(n) = num("LOOPFORGE_EGRAPH_TIME_MS") {
            l.time = Duration::from_millis(n);
        }
        l
    }
}

/// Why a run stopped.
#[derive(Clone, Debug, PartialEq)]
pub enum Stop {
    /// No rule could add anything: every equivalence the rules can find was found.
    Saturated,
    /// The iteration limit (the value) was reached.
    IterationLimit(usize),
    /// The e-graph outgrew the node limit (the value).
    NodeLimit(usize),
    /// The time limit was reached.
    TimeLimit(Duration),
    /// Anything else egg reports.
    Other(String),
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stop::Saturated => write!(f, "saturated"),
            Stop::IterationLimit(n) => write!(f, "iteration limit ({})", n),
            Stop::NodeLimit(n) => write!(f, "node limit ({})", n),
            Stop::TimeLimit(t) => write!(f, "time limit ({:?})", t),
            Stop::Other(s) => write!(f, "stopped: {}", s),
        }
    }
}

/// What one run did.
#[derive(Clone, Debug, PartialEq)]
pub struct RunReport {
    /// Why it stopped.
    pub stop: Stop,
    /// Iterations run.
    pub iterations: usize,
    /// E-nodes at the end.
    pub nodes: usize,
    /// E-classes at the end.
    pub classes: usize,
    /// Whether the expression was replaced (the extracted one was cheaper).
    pub rewritten: bool,
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} after {} iterations, {} nodes, {} classes{}",
            self.stop,
            self.iterations,
            self.nodes,
            self.classes,
            if self.rewritten { ", rewritten" } else { "" }
        )
    }
}

/// The runs of one pass, summed: what the IR dumps print.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    /// Every run, in order.
    pub runs: Vec<RunReport>,
}

impl Summary {
    /// Record a run.
    pub fn push(&mut self, r: RunReport) {
        self.runs.push(r);
    }
    /// How many runs stopped for a reason like `stop` (limits compared by kind only).
    pub fn count(&self, stop: &Stop) -> usize {
        self.runs
            .iter()
            .filter(|r| std::mem::discriminant(&r.stop) == std::mem::discriminant(stop))
            .count()
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.runs.is_empty() {
            return write!(f, "egraph: nothing to run on");
        }
        let n = self.runs.len();
        let rewritten = self.runs.iter().filter(|r| r.rewritten).count();
        let iters = self.runs.iter().map(|r| r.iterations).max().unwrap_or(0);
        let nodes = self.runs.iter().map(|r| r.nodes).max().unwrap_or(0);
        write!(f, "egraph: {} run{}", n, if n == 1 { "" } else { "s" })?;
        let sat = self.count(&Stop::Saturated);
        if sat > 0 {
            write!(f, ", {} saturated", sat)?;
        }
        // Limits hit, each named with its value (the first run's).
        let mut seen: Vec<String> = vec![];
        for r in &self.runs {
            if r.stop == Stop::Saturated {
                continue;
            }
            let name = r.stop.to_string();
            if !seen.contains(&name) {
                let k = self.runs.iter().filter(|x| x.stop == r.stop).count();
                write!(f, ", {} stopped by the {}", k, name)?;
                seen.push(name);
            }
        }
        write!(
            f,
            ", max {} iterations, max {} nodes, {} rewritten",
            iters, nodes, rewritten
        )
    }
}

// ---------------------------------------------------------------- costs

/// Cost for index expressions: `(number of / and %, number of nodes)`, compared in that
/// order, so an expression without division or modulo always wins.
pub struct IndexCost;

impl CostFunction<Lf> for IndexCost {
    type Cost = (usize, usize);
    fn cost<C>(&mut self, enode: &Lf, mut costs: C) -> (usize, usize)
    where
        C: FnMut(Id) -> (usize, usize),
    {
        let own = matches!(enode, Lf::Div(_) | Lf::Mod(_)) as usize;
        enode.fold((own, 1), |(d, n), c| {
            let (cd, cn) = costs(c);
            (d + cd, n + cn)
        })
    }
}

/// Cost for float values: `(number of exp whose argument may be positive, weighted size)`.
/// An `exp` of an argument the analysis proves `<= 0` cannot overflow and is not counted
/// in the first component, which is what makes `log(1 + exp(x))` lose to
/// `max(x, 0) + log1p(exp(-|x|))`. Transcendental calls weigh 16, `sqrt`, `/` and `%` 4,
/// everything else 1.
pub struct AlgebraCost<'a> {
    /// The saturated e-graph (for the sign facts of `exp` arguments).
    pub egraph: &'a LfGraph,
}

fn algebra_node_cost(enode: &Lf, child_nonpos: bool) -> (usize, usize) {
    let weight = match enode {
        Lf::Exp(_)
        | Lf::Log(_)
        | Lf::Log1p(_)
        | Lf::Tanh(_)
        | Lf::Sigmoid(_)
        | Lf::Erf(_)
        | Lf::Pow(_) => 16,
        Lf::Sqrt(_) | Lf::Div(_) | Lf::Mod(_) => 4,
        _ => 1,
    };
    let risky = matches!(enode, Lf::Exp(_)) && !child_nonpos;
    (risky as usize, weight)
}

impl CostFunction<Lf> for AlgebraCost<'_> {
    type Cost = (usize, usize);
    fn cost<C>(&mut self, enode: &Lf, mut costs: C) -> (usize, usize)
    where
        C: FnMut(Id) -> (usize, usize),
    {
        let nonpos = match enode {
            Lf::Exp([x]) => self.egraph[*x].data.nonpos,
            _ => false,
        };
        enode.fold(algebra_node_cost(enode, nonpos), |(r, w), c| {
            let (cr, cw) = costs(c);
            (r + cr, w + cw)
        })
    }
}

// ---------------------------------------------------------------- conversion

/// An expression converted to the e-graph's language, with its atom table.
pub struct Converted {
    /// The expression.
    pub rec: RecExpr<Lf>,
    /// Atom `k` stands for `atoms[k]`.
    pub atoms: Vec<Expr>,
    /// The domain of the conversion.
    pub domain: Domain,
}

struct ToRec {
    domain: Domain,
    rec: RecExpr<Lf>,
    atoms: Vec<Expr>,
    by_text: HashMap<String, Vec<u32>>,
    /// Hash-consing: equal nodes are added once, so the RecExpr is a DAG.
    memo: HashMap<Lf, Id>,
}

impl ToRec {
    fn push(&mut self, n: Lf) -> Id {
        if let Some(id) = self.memo.get(&n) {
            return *id;
        }
        let id = self.rec.add(n.clone());
        self.memo.insert(n, id);
        id
    }

    fn atom(&mut self, e: &Expr) -> Id {
        let text = e.to_string();
        let same = self.by_text.get(&text).and_then(|ks| {
            ks.iter()
                .find(|k| self.atoms[**k as usize].structural_eq(e))
        });
        let k = match same {
            Some(k) => *k,
            None => {
                let k = self.atoms.len() as u32;
                self.atoms.push(e.clone());
                self.by_text.entry(text).or_default().push(k);
                k
            }
        };
        self.push(Lf::Atom(Atom(k)))
    }

    /// Whether `e` is a value of the domain (or a boolean) that the language can express
    /// node by node.
    fn value_type(&self, t: DType) -> bool {
        t == self.domain.dtype()
    }

    fn add(&mut self, e: &Expr) -> Id {
        if e.lanes() != 1 {
            return self.atom(e);
        }
        let t = self.domain.dtype();
        match e.node() {
            ExprNode::Int(v, dt) if *dt == DType::Bool || (*dt == t && !t.is_float()) => {
                self.push(Lf::Num(*v))
            }
            ExprNode::Float(v, dt) if *dt == t => self.push(Lf::Flt(Float::new(*v))),
            ExprNode::Binary(op, a, b) if self.value_type(a.dtype()) => {
                let (x, y) = (self.add(a), self.add(b));
                self.push(match op {
                    BinOp::Add => Lf::Add([x, y]),
                    BinOp::Sub => Lf::Sub([x, y]),
                    BinOp::Mul => Lf::Mul([x, y]),
                    BinOp::Div => Lf::Div([x, y]),
                    BinOp::Mod => Lf::Mod([x, y]),
                    BinOp::Min => Lf::Min([x, y]),
                    BinOp::Max => Lf::Max([x, y]),
                })
            }
            ExprNode::Cmp(op, a, b) if self.value_type(a.dtype()) => {
                let (x, y) = (self.add(a), self.add(b));
                self.push(match op {
                    CmpOp::Eq => Lf::Eq([x, y]),
                    CmpOp::Ne => Lf::Ne([x, y]),
                    CmpOp::Lt => Lf::Lt([x, y]),
                    CmpOp::Le => Lf::Le([x, y]),
                    CmpOp::Gt => Lf::Gt([x, y]),
                    CmpOp::Ge => Lf::Ge([x, y]),
                })
            }
            ExprNode::And(a, b) => {
                let (x, y) = (self.add(a), self.add(b));
                self.push(Lf::And([x, y]))
            }
            ExprNode::Or(a, b) => {
                let (x, y) = (self.add(a), self.add(b));
                self.push(Lf::Or([x, y]))
            }
            ExprNode::Not(a) => {
                let x = self.add(a);
                self.push(Lf::Not([x]))
            }
            ExprNode::Select(c, a, b) if self.value_type(a.dtype()) || a.dtype() == DType::Bool => {
                let (x, y, z) = (self.add(c), self.add(a), self.add(b));
                self.push(Lf::Select([x, y, z]))
            }
            ExprNode::Call(f, args) if t.is_float() && self.value_type(e.dtype()) => {
                let ids: Vec<Id> = args.iter().map(|a| self.add(a)).collect();
                self.push(match f {
                    MathFn::Exp => Lf::Exp([ids[0]]),
                    MathFn::Log => Lf::Log([ids[0]]),
                    MathFn::Log1p => Lf::Log1p([ids[0]]),
                    MathFn::Sqrt => Lf::Sqrt([ids[0]]),
                    MathFn::Tanh => Lf::Tanh([ids[0]]),
                    MathFn::Sigmoid => Lf::Sigmoid([ids[0]]),
                    MathFn::Erf => Lf::Erf([ids[0]]),
                    MathFn::Abs => Lf::Abs([ids[0]]),
                    MathFn::Floor => Lf::Floor([ids[0]]),
                    MathFn::Ceil => Lf::Ceil([ids[0]]),
                    MathFn::Pow => Lf::Pow([ids[0], ids[1]]),
                })
            }
            _ => self.atom(e),
        }
    }
}

/// Convert `e` for `domain`. `None` when `e` is not a scalar of the domain's type or a
/// boolean (there would be nothing for the rules to see).
pub fn to_rec(e: &Expr, domain: Domain) -> Option<Converted> {
    let t = e.dtype();
    if e.lanes() != 1 || (t != domain.dtype() && t != DType::Bool) {
        return None;
    }
    let mut c = ToRec {
        domain,
        rec: RecExpr::default(),
        atoms: vec![],
        by_text: HashMap::new(),
        memo: HashMap::new(),
    };
    c.add(e);
    Some(Converted {
        rec: c.rec,
        atoms: c.atoms,
        domain,
    })
}

/// The types of `node`'s children when `node` has type `dt` in `domain`.
fn child_types(node: &Lf, dt: DType, domain: Domain) -> Vec<DType> {
    match node {
        Lf::Eq(_) | Lf::Ne(_) | Lf::Lt(_) | Lf::Le(_) | Lf::Gt(_) | Lf::Ge(_) => {
            vec![domain.dtype(); 2]
        }
        Lf::And(_) | Lf::Or(_) => vec![DType::Bool; 2],
        Lf::Not(_) => vec![DType::Bool],
        Lf::Select(_) => vec![DType::Bool, dt, dt],
        n => vec![dt; n.children().len()],
    }
}

/// One node rebuilt as an expression of type `dt` from its rebuilt children.
fn node_expr(node: &Lf, dt: DType, kids: Vec<Expr>, atoms: &[Expr]) -> Expr {
    let b = |op, k: &[Expr]| Expr::new(ExprNode::Binary(op, k[0].clone(), k[1].clone()));
    let c = |op, k: &[Expr]| Expr::new(ExprNode::Cmp(op, k[0].clone(), k[1].clone()));
    let call = |f, k: Vec<Expr>| Expr::new(ExprNode::Call(f, k));
    match node {
        Lf::Add(_) => b(BinOp::Add, &kids),
        Lf::Sub(_) => b(BinOp::Sub, &kids),
        Lf::Mul(_) => b(BinOp::Mul, &kids),
        Lf::Div(_) => b(BinOp::Div, &kids),
        Lf::Mod(_) => b(BinOp::Mod, &kids),
        Lf::Min(_) => b(BinOp::Min, &kids),
        Lf::Max(_) => b(BinOp::Max, &kids),
        Lf::Eq(_) => c(CmpOp::Eq, &kids),
        Lf::Ne(_) => c(CmpOp::Ne, &kids),
        Lf::Lt(_) => c(CmpOp::Lt, &kids),
        Lf::Le(_) => c(CmpOp::Le, &kids),
        Lf::Gt(_) => c(CmpOp::Gt, &kids),
        Lf::Ge(_) => c(CmpOp::Ge, &kids),
        Lf::And(_) => Expr::new(ExprNode::And(kids[0].clone(), kids[1].clone())),
        Lf::Or(_) => Expr::new(ExprNode::Or(kids[0].clone(), kids[1].clone())),
        Lf::Not(_) => Expr::new(ExprNode::Not(kids[0].clone())),
        Lf::Select(_) => Expr::new(ExprNode::Select(
            kids[0].clone(),
            kids[1].clone(),
            kids[2].clone(),
        )),
        Lf::Exp(_) => call(MathFn::Exp, kids),
        Lf::Log(_) => call(MathFn::Log, kids),
        Lf::Log1p(_) => call(MathFn::Log1p, kids),
        Lf::Sqrt(_) => call(MathFn::Sqrt, kids),
        Lf::Tanh(_) => call(MathFn::Tanh, kids),
        Lf::Sigmoid(_) => call(MathFn::Sigmoid, kids),
        Lf::Erf(_) => call(MathFn::Erf, kids),
        Lf::Abs(_) => call(MathFn::Abs, kids),
        Lf::Floor(_) => call(MathFn::Floor, kids),
        Lf::Ceil(_) => call(MathFn::Ceil, kids),
        Lf::Pow(_) => call(MathFn::Pow, kids),
        Lf::Num(v) => Expr::int_of(*v, dt),
        Lf::Flt(v) => Expr::float_of(v.get(), dt),
        Lf::Atom(a) => atoms[a.0 as usize].clone(),
    }
}

/// Rebuild a converted expression (the inverse of [`to_rec`]); `dt` is the root's type.
pub fn from_rec(rec: &RecExpr<Lf>, atoms: &[Expr], domain: Domain, dt: DType) -> Expr {
    fn go(
        rec: &RecExpr<Lf>,
        id: Id,
        dt: DType,
        atoms: &[Expr],
        domain: Domain,
        memo: &mut HashMap<(Id, DType), Expr>,
    ) -> Expr {
        if let Some(e) = memo.get(&(id, dt)) {
            return e.clone();
        }
        let node = &rec[id];
        let tys = child_types(node, dt, domain);
        let kids: Vec<Expr> = node
            .children()
            .iter()
            .zip(tys)
            .map(|(c, t)| go(rec, *c, t, atoms, domain, memo))
            .collect();
        let e = node_expr(node, dt, kids, atoms);
        memo.insert((id, dt), e.clone());
        e
    }
    go(rec, rec.root(), dt, atoms, domain, &mut HashMap::new())
}

// ---------------------------------------------------------------- running

/// Saturate `c` with `rules` under `limits`; the runner holds the e-graph and its root.
fn saturate(
    c: &Converted,
    ranges: HashMap<u32, (i64, i64)>,
    rules: &[LfRewrite],
    limits: &Limits,
) -> Runner<Lf, LfAnalysis> {
    let analysis = LfAnalysis {
        domain: c.domain,
        ranges,
    };
    Runner::new(analysis)
        .with_node_limit(limits.nodes)
        .with_iter_limit(limits.iterations)
        .with_time_limit(limits.time)
        .with_expr(&c.rec)
        .run(rules)
}

fn report(r: &Runner<Lf, LfAnalysis>, limits: &Limits, rewritten: bool) -> RunReport {
    // Named by the configured limits (egg reports the size reached for the node limit).
    let stop = match &r.stop_reason {
        Some(egg::StopReason::Saturated) => Stop::Saturated,
        Some(egg::StopReason::IterationLimit(_)) => Stop::IterationLimit(limits.iterations),
        Some(egg::StopReason::NodeLimit(_)) => Stop::NodeLimit(limits.nodes),
        Some(egg::StopReason::TimeLimit(_)) => Stop::TimeLimit(limits.time),
        Some(egg::StopReason::Other(s)) => Stop::Other(s.clone()),
        None => Stop::Other("not run".into()),
    };
    RunReport {
        stop,
        iterations: r.iterations.len(),
        nodes: r.egraph.total_number_of_nodes(),
        classes: r.egraph.number_of_classes(),
        rewritten,
    }
}

/// Whether `e` holds an `int64` floor division or modulo.
pub fn has_int_divmod(e: &Expr) -> bool {
    let mut found = false;
    e.visit(&mut |x| {
        if let ExprNode::Binary(BinOp::Div | BinOp::Mod, a, _) = x.node() {
            found |= a.dtype() == DType::I64;
        }
        !found
    });
    found
}

/// Simplify an index expression (an `int64` value or a condition over them) by equality
/// saturation with [`rules::index`], knowing the constant range `[lo, hi]` of variables
/// (`range(var id)`). Returns the replacement when the extracted expression is cheaper
/// under [`IndexCost`] (else `e` itself) and the run's report; `None` as the report when
/// `e` is not an index expression (nothing was run).
pub fn simplify_index(
    e: &Expr,
    range: &dyn Fn(u64) -> Option<(i64, i64)>,
    limits: &Limits,
) -> (Expr, Option<RunReport>) {
    let Some(c) = to_rec(e, Domain::Index) else {
        return (e.clone(), None);
    };
    let ranges: HashMap<u32, (i64, i64)> = c
        .atoms
        .iter()
        .enumerate()
        .filter_map(|(k, a)| Some((k as u32, range(a.as_var()?.id())?)))
        .collect();
    let runner = saturate(&c, ranges, rules::index_rules(), limits);
    let root = runner.egraph.find(runner.roots[0]);
    let before = IndexCost.cost_rec(&c.rec);
    let (after, best) = Extractor::new(&runner.egraph, IndexCost).find_best(root);
    if after < before {
        let out = from_rec(&best, &c.atoms, c.domain, e.dtype());
        (out, Some(report(&runner, limits, true)))
    } else {
        (e.clone(), Some(report(&runner, limits, false)))
    }
}

/// Rewrite a float value expression with [`rules::algebra`] and [`rules::numerics`] and
/// extract it under [`AlgebraCost`], binding every subexpression the result uses more
/// than once with a `let` (`cse0`, `cse1`, ...). Returns `e` itself unless the extracted
/// form is cheaper; `None` as the report when `e` is not a scalar float (nothing run).
pub fn rewrite_algebra(e: &Expr, limits: &Limits) -> (Expr, Option<RunReport>) {
    let t = e.dtype();
    if !t.is_float() {
        return (e.clone(), None);
    }
    let Some(c) = to_rec(e, Domain::Float(t)) else {
        return (e.clone(), None);
    };
    let runner = saturate(&c, HashMap::new(), rules::algebra_rules(), limits);
    let eg = &runner.egraph;
    let before = original_algebra_cost(eg, &c.rec);
    let ex = Extractor::new(eg, AlgebraCost { egraph: eg });
    let root = eg.find(runner.roots[0]);
    let after = ex.find_best_cost(root);
    // A DAG with shared subexpressions counts each once: compare the tree costs, and
    // also take a result that is as cheap but shares what the original repeats.
    let dag = dag_of(eg, &ex, root, t, &c);
    let shares = dag.lets > 0 && has_repeats(&c);
    if after < before || (after == before && shares) {
        (dag.expr, Some(report(&runner, limits, true)))
    } else {
        (e.clone(), Some(report(&runner, limits, false)))
    }
}

/// The tree cost of the original expression under [`AlgebraCost`] (its `exp` nodes judged
/// by the saturated e-graph's facts about their arguments).
fn original_algebra_cost(eg: &LfGraph, rec: &RecExpr<Lf>) -> (usize, usize) {
    let mut class: Vec<Id> = vec![];
    let mut cost: Vec<(usize, usize)> = vec![];
    for node in rec.as_ref() {
        let n = node.clone().map_children(|c| class[usize::from(c)]);
        let id = eg.lookup(n.clone()).map(|i| eg.find(i));
        let nonpos = match &n {
            Lf::Exp([x]) => eg[*x].data.nonpos,
            _ => false,
        };
        let own = algebra_node_cost(node, nonpos);
        let total = node.fold(own, |(r, w), c| {
            let (cr, cw) = cost[usize::from(c)];
            (r + cr, w + cw)
        });
        // Every node of the original is in the e-graph (it was added first).
        class.push(id.unwrap_or_else(|| Id::from(0usize)));
        cost.push(total);
    }
    cost.last().copied().unwrap_or((0, 0))
}

/// Whether the original repeats a subexpression worth sharing: an operation, or an
/// atom that is not a variable (a tensor read, a load, a cast).
fn has_repeats(c: &Converted) -> bool {
    // The conversion hash-conses: a repeated subexpression is one node used twice.
    let nodes = c.rec.as_ref();
    let mut uses = vec![0usize; nodes.len()];
    for n in nodes {
        for k in n.children() {
            uses[usize::from(*k)] += 1;
        }
    }
    nodes.iter().zip(uses).any(|(n, u)| {
        let worth = match n {
            Lf::Atom(a) => c.atoms[a.0 as usize].as_var().is_none(),
            n => !n.is_leaf(),
        };
        worth && u > 1
    })
}

struct Dag {
    expr: Expr,
    lets: usize,
}

/// The extracted expression as a DAG: every e-class is built once; those used more than
/// once (other than constants and variables) are bound with `let`, innermost first.
fn dag_of(
    eg: &LfGraph,
    ex: &Extractor<AlgebraCost, Lf, LfAnalysis>,
    root: Id,
    dt: DType,
    c: &Converted,
) -> Dag {
    // Uses of each (class, type) by distinct parents in the DAG.
    let mut uses: HashMap<(Id, DType), usize> = HashMap::new();
    let mut order: Vec<(Id, DType)> = vec![];
    fn count(
        eg: &LfGraph,
        ex: &Extractor<AlgebraCost, Lf, LfAnalysis>,
        id: Id,
        dt: DType,
        domain: Domain,
        uses: &mut HashMap<(Id, DType), usize>,
        order: &mut Vec<(Id, DType)>,
    ) {
        let id = eg.find(id);
        let n = uses.entry((id, dt)).or_insert(0);
        *n += 1;
        if *n > 1 {
            return;
        }
        let node = ex.find_best_node(id).clone();
        for (k, t) in node.children().iter().zip(child_types(&node, dt, domain)) {
            count(eg, ex, *k, t, domain, uses, order);
        }
        order.push((id, dt));
    }
    count(eg, ex, root, dt, c.domain, &mut uses, &mut order);
    let mut built: HashMap<(Id, DType), Expr> = HashMap::new();
    let mut lets: Vec<(Var, Expr)> = vec![];
    let root_key = (eg.find(root), dt);
    for key in order {
        let node = ex.find_best_node(key.0).clone();
        let kids: Vec<Expr> = node
            .children()
            .iter()
            .zip(child_types(&node, key.1, c.domain))
            .map(|(k, t)| built[&(eg.find(*k), t)].clone())
            .collect();
        let e = node_expr(&node, key.1, kids, &c.atoms);
        let trivial = matches!(
            e.node(),
            ExprNode::Int(..) | ExprNode::Float(..) | ExprNode::Var(_)
        );
        if uses[&key] > 1 && key != root_key && !trivial && key.1 == c.domain.dtype() {
            let v = Var::new(format!("cse{}", lets.len()), key.1);
            lets.push((v.clone(), e));
            built.insert(key, v.expr());
        } else {
            built.insert(key, e);
        }
    }
    let mut out = built[&root_key].clone();
    let n = lets.len();
    for (v, val) in lets.into_iter().rev() {
        out = Expr::new(ExprNode::Let(v, val, out));
    }
    Dag { expr: out, lets: n }
}

#[cfg(test)]
mod tests;
