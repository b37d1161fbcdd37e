//! The one error type of loopforge.
//!
//! Two tiers: user mistakes are typed variants whose message names the tensor, stage or
//! axis and says what would be legal; compiler bugs go through [`Error::Internal`], which
//! carries the IR that triggered them (see [`internal`]).

use thiserror::Error as ThisError;

/// Every failure loopforge reports.
#[derive(Debug, Clone, ThisError, PartialEq)]
pub enum Error {
    /// A tensor expression is malformed (wrong number of indices, mismatched dtypes...).
    #[error("invalid tensor expression: {0}")]
    InvalidExpr(String),
    /// A schedule primitive was used illegally; the message names stage and axis.
    #[error("In schedule for {stage}: {msg}")]
    Schedule {
        /// The stage (tensor name) the primitive was applied to.
        stage: String,
        /// What went wrong and what is legal.
        msg: String,
    },
    /// A trace could not be parsed or replayed.
    #[error("cannot replay trace: {0}")]
    Trace(String),
    /// `lower`/`build` was asked for something it cannot produce.
    #[error("cannot lower: {0}")]
    Lower(String),
    /// The arrays passed to a compiled kernel do not match its signature.
    #[error("bad kernel arguments: {0}")]
    Argument(String),
    /// A symbolic dimension could not be bound from the arguments.
    #[error("unbound symbolic dimension `{0}`: no argument's shape defines it")]
    UnboundVar(String),
    /// The target is not supported in this build or on this machine.
    #[error("unsupported target: {0}")]
    Target(String),
    /// A model graph is malformed, or a graph runtime was given the wrong parameters or
    /// inputs; `node` names the node, input or parameter at fault.
    #[error("node {node}: {msg}")]
    Graph {
        /// The node, graph input or parameter the error is about.
        node: String,
        /// What went wrong and what is legal.
        msg: String,
    },
    /// A model file could not be imported: malformed or truncated bytes, an unsupported
    /// operator set or operators (the message lists every unsupported operator with its
    /// node names), or a feature of the format the importer does not handle.
    #[error("cannot import model: {0}")]
    Model(String),
    /// A tuning log could not be read or written, or one of its configurations does not
    /// fit the node it is recorded for; the message names the file and line or the node.
    #[error("tuning: {0}")]
    Tuning(String),
    /// A compiler bug. The message carries the IR that triggered it.
    #[error("internal compiler error (please report): {msg}\n--- IR ---\n{ir}")]
    Internal {
        /// What invariant was broken.
        msg: String,
        /// The IR (or other context) at the point of failure.
        ir: String,
    },
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// The single internal-error path: a compiler bug, reported with the IR that triggered it.
pub fn internal(msg: impl Into<String>, ir: impl std::fmt::Display) -> Error {
    Error::Internal {
        msg: msg.into(),
        ir: ir.to_string(),
    }
}

/// Shorthand for a schedule error.
pub(crate) fn sched_err(stage: &str, msg: impl Into<String>) -> Error {
    Error::Schedule {
        stage: stage.to_string(),
        msg: msg.into(),
    }
}

/// Shorthand for a graph error.
pub(crate) fn graph_err(node: &str, msg: impl Into<String>) -> Error {
    Error::Graph {
        node: node.to_string(),
        msg: msg.into(),
    }
}
