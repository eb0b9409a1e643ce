//! Modbus: planning, decoding and plausibility are pure ([`plan`],
//! [`decode`], [`reading`], [`plausible`]); [`gateway`] owns the
//! connections and the polling schedule, [`supervise`] the gateway tasks.

pub mod decode;
pub mod gateway;
pub mod plan;
pub mod plausible;
pub mod reading;
pub mod stats;
pub mod supervise;
