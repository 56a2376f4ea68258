//! The supervisors' HTTP side: statistics API, live state, Prometheus metrics, reload, the
//! dashboard and the wallboard. It reads the call records and the live snapshot; it never blocks the SIP loop.

pub mod api;
pub mod dashboard;
pub mod live;
pub mod metrics;
pub mod server;
pub mod wallboard;

pub use server::{check_bind, serve, HttpState};
