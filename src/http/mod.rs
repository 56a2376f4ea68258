//! The supervisors' HTTP side: statistics API, live state, Prometheus metrics, reload, and the
//! dashboard. It reads the call records and the live snapshot; it never blocks the SIP loop.

pub mod api;
pub mod dashboard;
pub mod live;
pub mod metrics;
pub mod server;

pub use server::{check_bind, serve, HttpState};
