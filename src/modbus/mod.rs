//! Modbus: planning, decoding and plausibility are pure ([`plan`],
//! [`decode`], [`assemble`], [`plausible`]); [`gateway`] owns the
//! connections and the polling schedule, [`supervise`] the gateway tasks.

pub mod assemble;
pub mod decode;
pub mod gateway;
pub mod plan;
pub mod plausible;
pub mod stats;
pub mod supervise;
