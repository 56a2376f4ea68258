//! The supervisor's commands besides `serve`: `check` a routing file before it goes live,
//! `simulate` a caller's keys through it offline, `reload` the running service.

pub mod call;
pub mod check;
pub mod diff;
pub mod history;
pub mod reload;
pub mod simulate;
pub mod stats;
