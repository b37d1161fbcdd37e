//! build (being written)
/// Target.
pub struct Target;
/// Kernel.
pub struct Kernel;
/// build.
pub fn build(_s: &crate::schedule::Schedule, _a: &[crate::te::Tensor], _t: Target) -> crate::Result<Kernel> { unimplemented!() }
