//! Media: RTP ports, G.711, prompts decoded once and shared by every call, per-call RTP
//! streams (pacing input, latching, statistics), DTMF detection in all three forms, and the
//! SRTP crypto contexts for SDES-keyed calls.

pub mod dtmf;
pub mod g711;
pub mod leg;
pub mod ports;
pub mod prompts;
pub mod srtp;
pub mod stream;
