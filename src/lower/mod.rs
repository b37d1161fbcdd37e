//! Lowering: schedule + tensor expressions -> loop IR. (pipeline being written)
pub mod ir;
pub mod simplify;

/// Lower a schedule (stub while the pipeline is written).
pub fn lower(_s: &crate::schedule::Schedule, _args: &[crate::te::Tensor]) -> crate::Result<ir::LoweredFunc> {
    unimplemented!()
}
