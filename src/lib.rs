//! pqwatch: watches the supply of a utility's large customers.
//!
//! The data flows one way:
//!
//! ```text
//! poll (Modbus/TCP) ─▶ readings ─▶ sink (InfluxDB line protocol, batched, retried)
//! ```
//!
//! Later stages (aggregation, rules, events, notification, reports) hang off
//! the same reading stream.
//!
//! Module map:
//! - [`config`]: files + conf.d + environment → validated, typed [`config::Config`].
//! - [`profile`]: device register maps as data (built-in TOML, user directory).
//! - [`schema`]: canonical field names and units.
//! - [`modbus`]: read planning and decoding (pure), gateway tasks (I/O).
//! - [`sink`]: line protocol encoding (pure) and InfluxDB v1/v2 writers (I/O).
//! - [`sim`]: the meter simulator (`pqwatch simulate`).
//! - [`app`]: wires the tasks and channels together and owns shutdown.
//! - [`secret`]: tokens and passwords that never print themselves.

pub mod app;
pub mod config;
pub mod events;
pub mod metrics;
pub mod modbus;
pub mod profile;
pub mod quality;
pub mod reading;
pub mod report;
pub mod schema;
pub mod secret;
pub mod sim;
pub mod sink;
pub mod state;
pub mod watch;
