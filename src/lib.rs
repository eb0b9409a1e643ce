//! pqwatch: watches the supply of a utility's large customers.
//!
//! The data flows one way:
//!
//! ```text
//! poll (Modbus/TCP) ─▶ readings ─┬─▶ sink ─▶ outbox (SQLite) ─▶ InfluxDB
//!                                └─▶ watch: windows (1/10/15 min) ─▶ rules ─▶ events
//!                                          │                                  ├─▶ event store (SQLite)
//!                                          ├─▶ pq_* points ─▶ sink            ├─▶ pq_event ─▶ sink
//!                                          │                                  └─▶ notifier ─▶ mail queue ─▶ mail sender ─▶ SMTP
//!                                          ├─▶ ledger (SQLite) ─▶ report scheduler ─▶ mail queue ───┘
//!                                          └─▶ 1-min load ─▶ demand (sliding 15 min; each meter and
//!                                              the customer's total) ─▶ load rules ─▶ events
//! ```
//!
//! Module map:
//! - [`config`]: files + conf.d + environment → validated, typed [`config::Config`].
//! - [`profile`]: device register maps as data (built-in TOML, user directory).
//! - `backoff`: the one retry policy (capped exponential, jitter, Retry-After).
//! - [`calendar`]: local days, report periods, cron (a leaf).
//! - [`clock`]: wall-clock ms, poll alignment, monotonic waits, clock steps (a leaf).
//! - [`schema`]: canonical field names and units.
//! - [`modbus`]: read planning and decoding (pure), gateway tasks (I/O) and
//!   their supervision.
//! - [`reading`]: what flows from pollers to the sink and the watch.
//! - `gather`: receiving readings in batches (fewer task wake-ups).
//! - `line_protocol`: escaping, tag and field sets of InfluxDB lines (a leaf).
//! - [`sink`]: readings as lines (pure), the durable outbox, InfluxDB writers.
//! - [`state`]: the SQLite state database (outbox, events, mail queue).
//! - [`quality`]: aggregation, demand, limit presets and rules (pure).
//! - [`watch`]: the task that runs aggregation and rules on live readings.
//! - [`events`]: the event store.
//! - [`notify`]: operator alerts (digests, rendering) into the mail queue.
//! - [`mail`]: the mail queue, transport, escaping and the one sender task.
//! - [`metrics`]: one counter set per subsystem; `/metrics` concatenates them.
//! - [`report`]: customer reports: ledger, model, rendering, schedule.
//! - [`sim`]: the meter simulator (`pqwatch simulate`).
//! - `http`: `/metrics`, `/healthz`, `/readyz` and the read-only JSON API.
//! - [`app`]: wires the tasks and channels, sends each stage its config
//!   slice (`config::reload`) and owns shutdown.
//! - [`secret`]: tokens and passwords that never print themselves.
//! - `systemd`: readiness and watchdog notifications (sd_notify).

pub mod app;
pub(crate) mod backoff;
pub mod calendar;
pub mod clock;
pub mod config;
pub mod events;
pub(crate) mod gather;
pub(crate) mod http;
pub(crate) mod line_protocol;
pub mod mail;
pub mod metrics;
pub mod modbus;
pub mod notify;
pub mod profile;
pub mod quality;
pub mod reading;
pub mod report;
pub mod schema;
pub mod secret;
pub mod sim;
pub mod sink;
pub mod state;
pub(crate) mod systemd;
pub mod watch;
