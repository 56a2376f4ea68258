//! Media: RTP ports, G.711, prompts decoded once and shared by every call, per-call RTP
//! streams (pacing input, latching, statistics) and DTMF detection in all three forms.

pub mod dtmf;
pub mod g711;
pub mod leg;
pub mod ports;
pub mod prompts;
pub mod stream;
