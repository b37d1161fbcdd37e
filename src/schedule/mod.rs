//! Schedules (being written).
/// A schedule.
pub struct Schedule;
/// An axis handle.
pub struct Axis;
/// Create a schedule.
pub fn create_schedule(_o: &[crate::te::Tensor]) -> crate::Result<Schedule> { unimplemented!() }
