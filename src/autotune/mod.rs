//! Autotuning: search the knobs of the CPU schedule templates on this machine and keep the
//! fastest in a tuning log, which `build` then reads.
//!
//! The pieces, in the order a tuning run uses them:
//! - [`workload`]: which nodes of a graph have a tunable template, and the key that
//!   identifies their computation (operator, attributes, shapes, dtypes) across graphs;
//! - [`space`]: the candidate configurations of a template for a shape, the default
//!   first;
//! - [`measure`]: compile a candidate and time it on random inputs, alone or interleaved
//!   with others;
//! - [`tuner`]: [`tune_graph`] runs the passes `build` runs, then for each distinct
//!   workload measures its candidates (rejecting any whose output differs from the
//!   default's), times the fastest few against the default, and appends the best to the
//!   [`TuningLog`];
//! - [`log`]: the log itself, one JSON record per line.
//!
//! `build` with a log ([`crate::graph_runtime::BuildSettings::tuning`]) schedules each
//! node whose workload the log holds (for the same target and thread count) with the
//! best recorded configuration ([`crate::graph_runtime::schedule::tuned_schedule`]) and
//! every other node with its default schedule.

mod config;
pub mod log;
pub mod measure;
pub mod space;
pub mod tuner;
pub mod workload;

pub use config::TunedConfig;
pub use log::{TuningLog, TuningRecord};
pub use tuner::{tune_graph, TuneEvent, TuneOptions, TuneReport, WorkloadResult};
pub use workload::{workload_key, Workload};
