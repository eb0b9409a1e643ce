//! Power quality: aggregation, limits and rules. Pure: windows and events
//! are computed from readings with no I/O; the task that feeds readings in
//! and stores/notifies what comes out lives in `app` and `notify`.
//!
//! - [`aggregate`]: polls → 1-minute and 10-minute (and demand) windows.
//! - [`demand`]: 1-minute means → sliding (or block) demand values, and a
//!   customer's total over its billing meters.
//! - `limits`: presets (GB/T 12325 + GB/T 14549, EN 50160, IEEE 519) as data.
//! - [`rules`]: state + window → event changes, with minimum duration and
//!   hysteresis.

pub mod aggregate;
pub mod demand;
pub(crate) mod limits;
pub mod rules;
