//! Modbus: planning, decoding and plausibility are pure ([`plan`],
//! [`decode`], [`assemble`], `plausible`); [`gateway`] owns the
//! connections and the polling schedule, `supervise` the gateway tasks.

pub mod assemble;
pub mod decode;
pub mod gateway;
pub mod plan;
pub(crate) mod plausible;
pub(crate) mod stats;
pub(crate) mod supervise;
