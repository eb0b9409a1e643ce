//! Modbus: planning and decoding are pure ([`plan`], [`decode`], [`reading`]);
//! [`gateway`] owns the connections and the polling schedule.

pub mod decode;
pub mod gateway;
pub mod plan;
pub mod reading;
