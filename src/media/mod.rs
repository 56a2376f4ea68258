//! Media: RTP ports, and (next) prompt playback, pacing and DTMF detection.

pub mod ports;
