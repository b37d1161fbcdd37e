//! The schedule trace: every primitive applied, as data. It serializes to JSON and replays
//! onto a fresh schedule of the same computation.

use serde::{Deserialize, Serialize};

/// One recorded schedule primitive. Stages and axes are named; names are deterministic, so
/// a trace replays onto any fresh schedule of the same computation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Step {
    /// `split(axis, factor)`.
    Split {
        stage: String,
        axis: String,
        factor: i64,
    },
    /// `split_shift_inwards(axis, factor)`.
    SplitShiftInwards {
        stage: String,
        axis: String,
        factor: i64,
    },
    /// `split(axis, nparts=...)`.
    SplitNparts {
        stage: String,
        axis: String,
        nparts: i64,
    },
    /// `fuse(axes...)` of adjacent leaf axes.
    Fuse { stage: String, axes: Vec<String> },
    /// `reorder(axes...)`.
    Reorder { stage: String, axes: Vec<String> },
    /// `vectorize(axis)`.
    Vectorize { stage: String, axis: String },
    /// `unroll(axis)`.
    Unroll { stage: String, axis: String },
    /// `parallel(axis)`.
    Parallel { stage: String, axis: String },
    /// `bind(axis, thread_tag)`.
    Bind {
        stage: String,
        axis: String,
        thread: String,
    },
    /// `compute_at(stage, parent, axis)`.
    ComputeAt {
        stage: String,
        parent: String,
        axis: String,
    },
    /// `compute_inline(stage)`.
    ComputeInline { stage: String },
    /// `compute_root(stage)`.
    ComputeRoot { stage: String },
    /// `cache_read(tensor, scope, readers)`.
    CacheRead {
        tensor: String,
        scope: String,
        readers: Vec<String>,
    },
    /// `storage_align(axis, factor, offset)`.
    StorageAlign {
        stage: String,
        axis: String,
        factor: i64,
        offset: i64,
    },
    /// `cache_write(tensor, scope)`.
    CacheWrite { tensor: String, scope: String },
    /// `rfactor(stage, axis, factor_axis)`: the new stage is `<stage>.rf`.
    Rfactor {
        stage: String,
        axis: String,
        factor_axis: usize,
    },
    /// `double_buffer(stage)`.
    DoubleBuffer { stage: String },
    /// `transform_layout(stage, dims)`.
    TransformLayout {
        stage: String,
        dims: Vec<super::LayoutDim>,
    },
    /// `tensorize(stage, axis, intrin)` (the intrinsic by its registered name).
    Tensorize {
        stage: String,
        axis: String,
        intrin: String,
    },
}

/// Serialize a trace as pretty JSON.
pub fn to_json(steps: &[Step]) -> String {
    serde_json::to_string_pretty(steps).expect("a trace always serializes")
}

/// Parse a trace from JSON.
pub fn from_json(s: &str) -> crate::Result<Vec<Step>> {
    serde_json::from_str(s).map_err(|e| crate::Error::Trace(format!("malformed trace JSON: {}", e)))
}
