//! `hotline`: IVR and call routing for Vilnius's shared city hotline 19118.
//!
//! Protocol and call logic are sans-I/O state machines (`sip`, `sdp`); `server` holds the thin
//! tokio drivers that own sockets and timers.

pub mod acd;
pub mod call;
pub mod cdr;
pub mod cli;
pub mod http;
pub mod ivr;
pub mod media;
pub mod numbers;
pub mod routing;
pub mod sdp;
pub mod server;
pub mod settings;
pub mod sip;
