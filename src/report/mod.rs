//! Customer voltage-quality reports. Pure parts first: [`ledger`] keeps the
//! per-day minute statistics reports are computed from. (Report model,
//! rendering and the schedule come with the reports issue.)

pub mod ledger;
