//! RTP load generator for `bench/run --bridge`: the media of every bridged call, callers' and
//! agents' side, from two UDP sockets, so that SIPp does only the signalling.
//!
//!     cargo build --release --example rtp_load
//!     target/release/examples/rtp_load --callers 127.0.0.1:7000 --agents 127.0.0.1:7100 \
//!         --duration 60 --audio bridge_audio.al
//!
//! The SIPp callers and agents put these two fixed addresses in their SDP. The generator learns
//! its peers the way symmetric RTP does: a packet from a service port it has not heard before
//! (the caller leg's prompt, the agent leg's relayed audio) makes that port a stream target.
//! Towards a caller leg it first presses key 1 as RFC 4733 telephone-events (the bench menu's
//! option for the bridge group), then talks; towards an agent leg it talks at once. "Talking" is
//! one packet of 160 A-law bytes (20 ms) every 20 ms per target, each target with its own random
//! SSRC, sequence +1 and timestamp +160 per packet, on an absolute clock (no drift). Targets are
//! spread over `--slots` phases of the 20 ms frame so the load is smooth; all packets due in a
//! phase on one socket leave in one `sendmmsg`. What comes back (relayed audio, prompts) is
//! drained with `recvmmsg`; it keeps its target alive, and the copies of the generator's own
//! packets measure the relay (`meter.rs`): delay and loss between SIGUSR1 and SIGUSR2, reported
//! under "relay". A target silent for `--idle-timeout` seconds (its call ended) is dropped.
//!
//! Bounded: loopback addresses only, stops after `--duration` seconds or at SIGTERM/SIGINT, and
//! then prints its counters as one JSON object on stdout.

use std::collections::HashMap;
use std::io;
use std::mem;
use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context};
use clap::Parser;
use rand::Rng;

mod meter;
mod side;
use meter::{Direction, Meter};
use side::*;

/// One 20 ms frame of 8 kHz audio.
const FRAME_NS: u64 = 20_000_000;
const FRAME_SAMPLES: u32 = 160;
const RTP_HEADER: usize = 12;
const PACKET_MAX: usize = RTP_HEADER + FRAME_SAMPLES as usize;
/// What a received datagram is read into: only its source address matters.
const RECV_BUF: usize = 64;
/// RFC 4733 event code of key 1, and the volume (-dBm0) SIPp's dtmf_2833_1.pcap uses.
const KEY_1: u8 = 1;
const KEY_VOLUME: u8 = 10;
/// Update packets of one key press (20 ms each, the last one with the E bit), then the E
/// packet twice more (RFC 4733 §2.5.1.4: the final packet is sent three times).
const KEY_UPDATES: u32 = 8;
const KEY_PACKETS: u32 = KEY_UPDATES + 2;

/// asm-generic/socket.h (x86_64, aarch64); not exported by libc for linux-gnu.
const SO_ATTACH_FILTER: libc::c_int = 26;

static STOP: AtomicBool = AtomicBool::new(false);
static MEASURE_START: AtomicBool = AtomicBool::new(false);
static MEASURE_END: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(signal: libc::c_int) {
    let flag = match signal {
        libc::SIGUSR1 => &MEASURE_START,
        libc::SIGUSR2 => &MEASURE_END,
        _ => &STOP,
    };
    flag.store(true, Ordering::Relaxed);
}

#[derive(Parser, Debug)]
#[command(about = "RTP load for bench/run --bridge (loopback only)")]
struct Args {
    /// The callers' media address (what the SIPp callers put in their SDP).
    #[arg(long, default_value = "127.0.0.1:7000")]
    callers: SocketAddrV4,
    /// The agents' media address (what the SIPp agents put in their SDP).
    #[arg(long, default_value = "127.0.0.1:7100")]
    agents: SocketAddrV4,
    /// Seconds until the generator stops by itself.
    #[arg(long)]
    duration: f64,
    /// Raw A-law (or µ-law) audio sent in 160-byte frames, looped; default: a fixed pattern.
    #[arg(long)]
    audio: Option<PathBuf>,
    /// Payload type of the callers' audio (8 PCMA, 0 PCMU).
    #[arg(long, default_value_t = 8)]
    caller_pt: u8,
    /// Payload type of the agents' audio.
    #[arg(long, default_value_t = 8)]
    agent_pt: u8,
    /// Payload type of telephone-event in the callers' offer.
    #[arg(long, default_value_t = 101)]
    event_pt: u8,
    /// Milliseconds from a caller leg's first packet to the key press.
    #[arg(long, default_value_t = 500)]
    key_delay_ms: u32,
    /// Milliseconds from the key press's start to the caller's first audio packet.
    #[arg(long, default_value_t = 300)]
    talk_after_ms: u32,
    /// Phases per 20 ms frame (the generator wakes 20 ms / slots apart).
    #[arg(long, default_value_t = 20)]
    slots: u32,
    /// Seconds without a (sampled) packet from a target after which it is dropped.
    #[arg(long, default_value_t = 5.0)]
    idle_timeout: f64,
    /// Only source ports in this range become targets (the service's RTP range).
    #[arg(long, default_value = "10000-19999")]
    peer_ports: String,
    /// Packets per sendmmsg / recvmmsg call at most.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Receive buffer asked for each socket, bytes.
    #[arg(long, default_value_t = 4 << 20)]
    rcvbuf: usize,
    /// Keep one in this many received packets (a power of two; 1 keeps all), those whose RTP
    /// sequence number is a multiple of it: a socket filter drops the others in the kernel, so
    /// the generator reads only enough to learn new ports, see that a target is still alive,
    /// and meter the relay on that sample.
    #[arg(long, default_value_t = 8)]
    sample: u32,
    /// Nice level to run at (negative needs CAP_SYS_NICE; on refusal it runs as started). A
    /// generator starved by the service's threads sends late, in bursts, which the relay
    /// delay then shows: bench/run gives it the service's runtime threads' -10.
    #[arg(long, allow_hyphen_values = true)]
    nice: Option<i32>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Caller,
    Agent,
}

fn parse_range(text: &str) -> anyhow::Result<(u16, u16)> {
    let (low, high) = text.split_once('-').context("--peer-ports wants MIN-MAX")?;
    let (low, high): (u16, u16) = (low.trim().parse()?, high.trim().parse()?);
    if low > high {
        bail!("--peer-ports {text}: MIN above MAX");
    }
    Ok((low, high))
}

fn load_audio(path: Option<&PathBuf>) -> anyhow::Result<Vec<[u8; FRAME_SAMPLES as usize]>> {
    let bytes = match path {
        Some(path) => std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        // A-law of a quiet sawtooth: any fixed bytes do; the relay does not look at them.
        None => (0..8000u32).map(|i| 0xD5 ^ (i % 16) as u8).collect(),
    };
    let frames: Vec<_> = bytes
        .chunks_exact(FRAME_SAMPLES as usize)
        .filter_map(|chunk| chunk.try_into().ok())
        .collect();
    if frames.is_empty() {
        bail!("the audio has less than one 160-byte frame");
    }
    Ok(frames)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.slots == 0 || !(1..=1024).contains(&args.batch) {
        bail!("--slots must be positive and --batch 1..=1024");
    }
    if !(args.duration > 0.0 && args.duration <= 3600.0) {
        bail!("--duration must be in (0, 3600] seconds");
    }
    let peers = parse_range(&args.peer_ports)?;
    let frames_of = |ms: u32| ms.div_ceil(20);
    let key_start = frames_of(args.key_delay_ms);
    let plan = Plan {
        key_start,
        talk_after: frames_of(args.talk_after_ms).max(KEY_PACKETS),
        caller_pt: args.caller_pt,
        agent_pt: args.agent_pt,
        event_pt: args.event_pt,
        audio: load_audio(args.audio.as_ref())?,
    };
    if !args.sample.is_power_of_two() {
        bail!("--sample must be a power of two (1 keeps every packet)");
    }
    let mut sides = [
        Side::new(Role::Caller, args.callers, &args)?,
        Side::new(Role::Agent, args.agents, &args)?,
    ];
    let nice = args.nice.map(|nice| {
        // SAFETY: setpriority on this (single-threaded) process only.
        let result = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
        if result != 0 {
            let error = io::Error::last_os_error();
            eprintln!("rtp_load: nice {nice} refused ({error}); running as started");
            return serde_json::json!({"asked": nice, "error": error.to_string()});
        }
        serde_json::json!({"asked": nice, "set": true})
    });
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGTERM, handler);
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGUSR1, handler);
        libc::signal(libc::SIGUSR2, handler);
    }
    eprintln!(
        "rtp_load: callers {} agents {} for {} s, {} slots of {} µs",
        args.callers,
        args.agents,
        args.duration,
        args.slots,
        FRAME_NS / u64::from(args.slots) / 1000
    );

    let mut batch = Batch::new(args.batch);
    let mut meter = Meter::new(args.sample);
    let slots = u64::from(args.slots);
    let tick_ns = FRAME_NS / slots;
    let idle_ticks = (args.idle_timeout * 1e9 / tick_ns as f64) as u64;
    let start = now_ns();
    let end = start + (args.duration * 1e9) as u64;
    let mut tick: u64 = 0;
    let (mut late_ticks, mut max_late_ns, mut late_sum_ns, mut sent_ticks) = (0u64, 0, 0, 0u64);
    let mut skipped_ticks = 0u64;
    // Per receive pass, at most this many recvmmsg calls per socket (then the sends go first).
    let recv_calls = 16;
    while !STOP.load(Ordering::Relaxed) {
        let now = now_ns();
        if now >= end {
            break;
        }
        if MEASURE_START.swap(false, Ordering::Relaxed) {
            meter.start_window(realtime_ns());
        }
        if MEASURE_END.swap(false, Ordering::Relaxed) {
            meter.end_window(realtime_ns());
        }
        // More than a frame behind (the generator did not get a CPU): those ticks are skipped,
        // not sent in a burst; the targets' timestamps stay on the clock.
        let behind = now.saturating_sub(start + tick * tick_ns);
        if behind > FRAME_NS {
            let skip = (behind - FRAME_NS) / tick_ns;
            skipped_ticks += skip;
            tick += skip;
        }
        // Every slot that is due (more than one only when the generator fell behind).
        while start + tick * tick_ns <= now {
            let late = now - (start + tick * tick_ns);
            late_sum_ns += late;
            max_late_ns = max_late_ns.max(late);
            sent_ticks += 1;
            if late > 1_000_000 {
                late_ticks += 1;
            }
            let slot = (tick % slots) as usize;
            for side in sides.iter_mut() {
                side.send_slot(slot, tick, idle_ticks, &plan, &mut batch, &mut meter);
            }
            tick += 1;
        }
        for side in sides.iter_mut() {
            side.receive(&mut batch, &mut meter, tick, peers, recv_calls);
        }
        sleep_until_ns(start + tick * tick_ns);
    }

    let report = serde_json::json!({
        "seconds": (now_ns() - start) as f64 / 1e9,
        "ticks": sent_ticks,
        "ticks_skipped": skipped_ticks,
        "tick_us": tick_ns / 1000,
        "sample": args.sample,
        "nice": nice,
        "late_ticks_over_1ms": late_ticks,
        "late_mean_us": late_sum_ns / sent_ticks.max(1) / 1000,
        "late_max_us": max_late_ns / 1000,
        "callers": sides[0].report(),
        "agents": sides[1].report(),
        "relay": meter.report(),
    });
    println!("{report}");
    Ok(())
}
