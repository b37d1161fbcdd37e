//! The tuning log: one JSON record per line (appended as the tuner goes, so an
//! interrupted run keeps what it measured), the best record of a workload chosen by
//! median time.

use super::TunedConfig;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

/// The target name of the records of CPU builds.
pub const CPU: &str = "cpu";

/// One measured configuration of one workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TuningRecord {
    /// The workload's key ([`super::workload_key`]).
    pub workload: String,
    /// The operator's name (`"conv2d"`, `"dense"`...), for people reading the log.
    pub op: String,
    /// The target the time was measured on ([`CPU`]).
    pub target: String,
    /// The thread count the build asks for.
    pub threads: usize,
    /// The configuration.
    pub config: TunedConfig,
    /// Its median time per run, in microseconds.
    pub median_us: f64,
    /// The default configuration's median time in the same tuning run.
    pub default_us: f64,
}

/// The records of a tuning log, in file order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TuningLog {
    records: Vec<TuningRecord>,
}

impl TuningLog {
    /// An empty log.
    pub fn new() -> TuningLog {
        TuningLog::default()
    }

    /// Read the log at `path`. A missing file, a line that is not a record or a record
    /// with a time that is not a positive number is an [`Error::Tuning`] naming the file
    /// and line.
    pub fn load(path: impl AsRef<Path>) -> Result<TuningLog> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Tuning(format!(
                "cannot read the tuning log {}: {}",
                path.display(),
                e
            ))
        })?;
        TuningLog::parse(&text, &path.display().to_string())
    }

    /// [`load`](Self::load), or an empty log when no file is at `path` (a first tuning
    /// run).
    pub fn load_or_new(path: impl AsRef<Path>) -> Result<TuningLog> {
        if path.as_ref().exists() {
            TuningLog::load(path)
        } else {
            Ok(TuningLog::new())
        }
    }

    /// Parse the lines of a log (`name` names it in errors); blank lines are skipped.
    pub fn parse(text: &str, name: &str) -> Result<TuningLog> {
        let mut records = vec![];
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let r: TuningRecord = serde_json::from_str(line).map_err(|e| {
                Error::Tuning(format!(
                    "{}:{}: not a tuning record ({}); each line is one JSON record as `loopforge tune` writes it",
                    name,
                    i + 1,
                    e
                ))
            })?;
            if !(r.median_us > 0.0 && r.median_us.is_finite()) {
                return Err(Error::Tuning(format!(
                    "{}:{}: median_us = {} is not a positive time",
                    name,
                    i + 1,
                    r.median_us
                )));
            }
            records.push(r);
        }
        Ok(TuningLog { records })
    }

    /// Every record, in file order.
    pub fn records(&self) -> &[TuningRecord] {
        &self.records
    }

    /// Add a record (in memory; see [`append`](Self::append)).
    pub fn push(&mut self, record: TuningRecord) {
        self.records.push(record);
    }

    /// The fastest record of `workload` measured for `target` with `threads` threads (the
    /// first of equals).
    pub fn best(&self, workload: &str, target: &str, threads: usize) -> Option<&TuningRecord> {
        self.records
            .iter()
            .filter(|r| r.workload == workload && r.target == target && r.threads == threads)
            .min_by(|a, b| a.median_us.total_cmp(&b.median_us))
    }

    /// Append `record` to the file at `path` (created if missing) and to this log.
    pub fn append(&mut self, path: impl AsRef<Path>, record: TuningRecord) -> Result<()> {
        let path = path.as_ref();
        let line = serde_json::to_string(&record)
            .map_err(|e| Error::Tuning(format!("cannot serialize a tuning record: {}", e)))?;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| writeln!(f, "{}", line))
            .map_err(|e| {
                Error::Tuning(format!(
                    "cannot append to the tuning log {}: {}",
                    path.display(),
                    e
                ))
            })?;
        self.records.push(record);
        Ok(())
    }

    /// The whole log as text (one record per line).
    pub fn to_text(&self) -> String {
        self.records
            .iter()
            .map(|r| serde_json::to_string(r).expect("records serialize") + "\n")
            .collect()
    }
}
