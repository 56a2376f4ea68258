//! The relay meter: what the service did with the generator's packets, measured at the far end
//! the way a phone's statistics would, so a bridged row needs no packet capture.
//!
//! The service relays a packet keeping its SSRC, sequence number and timestamp, so a copy that
//! comes back on the other socket is found by (SSRC, sequence). Only the sampled packets are
//! tracked (sequence ≡ 0 mod `sample`: the socket filter passes the copies of exactly those),
//! which makes loss countable: a sampled packet sent inside the window whose copy never came
//! back was lost in the relay. The delay is the copy's kernel receive timestamp (taken inside
//! the service's send on loopback) minus the packet's send time, interpolated over the
//! `sendmmsg` that carried it (its kernel timestamp is taken inside that call).

use std::collections::HashMap;

/// Sampled packets remembered per stream: 64 × `sample` packets, 10 s at 1 in 8.
const RING: usize = 64;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    CallerToAgent,
    AgentToCaller,
}

#[derive(Clone, Copy, Default)]
struct Sent {
    seq: u16,
    at_ns: u64,
    /// Counted as expected (sent inside the window, stream already relayed) and not yet seen.
    awaited: bool,
}

struct StreamLog {
    direction: Direction,
    /// A copy of this stream came back: from then on its packets are expected back.
    relayed: bool,
    ring: [Sent; RING],
}

#[derive(Default)]
struct Tally {
    /// Packets of relayed streams sent in the window (all, not only the sampled).
    sent_relayed: u64,
    expected: u64,
    matched: u64,
    delays_ns: Vec<u32>,
}

pub(crate) struct Meter {
    sample: u16,
    streams: HashMap<u32, StreamLog>,
    window: Option<(u64, Option<u64>)>,
    tallies: [Tally; 2],
    /// Copies whose sequence number is not a sampled one: the socket filter is not doing
    /// what this meter assumes (reported so a wrong filter cannot pass unnoticed).
    off_sample: u64,
}

fn index(direction: Direction) -> usize {
    match direction {
        Direction::CallerToAgent => 0,
        Direction::AgentToCaller => 1,
    }
}

impl Meter {
    pub(crate) fn new(sample: u32) -> Self {
        Self {
            sample: sample.clamp(1, 1 << 15) as u16,
            streams: HashMap::new(),
            window: None,
            tallies: Default::default(),
            off_sample: 0,
        }
    }

    fn sampled(&self, seq: u16) -> bool {
        seq.is_multiple_of(self.sample)
    }

    fn slot(&self, seq: u16) -> usize {
        usize::from(seq / self.sample) % RING
    }

    fn measuring(&self, at_ns: u64) -> bool {
        self.window
            .is_some_and(|(start, end)| at_ns >= start && end.is_none_or(|end| at_ns < end))
    }

    pub(crate) fn start_window(&mut self, now_ns: u64) {
        if self.window.is_none() {
            self.window = Some((now_ns, None));
        }
    }

    pub(crate) fn end_window(&mut self, now_ns: u64) {
        if let Some((start, None)) = self.window {
            self.window = Some((start, Some(now_ns)));
        }
    }

    /// A packet left (its header's SSRC and sequence), at about `at_ns` (CLOCK_REALTIME).
    pub(crate) fn on_sent(&mut self, direction: Direction, ssrc: u32, seq: u16, at_ns: u64) {
        let measuring = self.measuring(at_ns);
        let sampled = self.sampled(seq);
        let slot = self.slot(seq);
        let log = self.streams.entry(ssrc).or_insert_with(|| StreamLog {
            direction,
            relayed: false,
            ring: [Sent::default(); RING],
        });
        let counted = measuring && log.relayed;
        if sampled {
            log.ring[slot] = Sent {
                seq,
                at_ns,
                awaited: counted,
            };
        }
        let tally = &mut self.tallies[index(direction)];
        if counted {
            tally.sent_relayed += 1;
            if sampled {
                tally.expected += 1;
            }
        }
    }

    /// A datagram came back with this SSRC and sequence, received at `at_ns` (kernel time).
    pub(crate) fn on_copy(&mut self, ssrc: u32, seq: u16, at_ns: u64) {
        let sampled = self.sampled(seq);
        let slot = self.slot(seq);
        // Not one of ours: a prompt or the IVR's silence towards a caller.
        let Some(log) = self.streams.get_mut(&ssrc) else {
            return;
        };
        if !sampled {
            self.off_sample += 1;
            return;
        }
        log.relayed = true;
        let sent = &mut log.ring[slot];
        if !sent.awaited || sent.seq != seq {
            return;
        }
        sent.awaited = false;
        let tally = &mut self.tallies[index(log.direction)];
        tally.matched += 1;
        let delay = at_ns.saturating_sub(sent.at_ns).min(u64::from(u32::MAX));
        tally.delays_ns.push(delay as u32);
    }

    pub(crate) fn report(&mut self) -> serde_json::Value {
        let window_s = match self.window {
            Some((start, Some(end))) => (end - start) as f64 / 1e9,
            _ => 0.0,
        };
        let sample = u64::from(self.sample);
        let mut all = Vec::new();
        let mut directions = Vec::new();
        let (mut lost_total, mut forwarded_total) = (0, 0);
        for tally in self.tallies.iter_mut() {
            tally.delays_ns.sort_unstable();
            all.extend_from_slice(&tally.delays_ns);
            let lost = tally.expected - tally.matched;
            // Every relayed packet, estimated from the sampled ones' fate.
            let forwarded = (tally.sent_relayed * tally.matched)
                .checked_div(tally.expected)
                .unwrap_or(0);
            lost_total += lost;
            forwarded_total += forwarded;
            let mut stats = delay_stats(&tally.delays_ns);
            stats.insert("sent".into(), tally.sent_relayed.into());
            stats.insert("forwarded".into(), forwarded.into());
            stats.insert("sampled_sent".into(), tally.expected.into());
            stats.insert("sampled_forwarded".into(), tally.matched.into());
            stats.insert("lost_in_relay".into(), (lost * sample).into());
            stats.insert("sampled_lost".into(), lost.into());
            directions.push(serde_json::Value::Object(stats));
        }
        all.sort_unstable();
        let mut both = delay_stats(&all);
        both.insert("forwarded".into(), forwarded_total.into());
        both.insert("lost_in_relay".into(), (lost_total * sample).into());
        both.insert("sampled_lost".into(), lost_total.into());
        serde_json::json!({
            "source": "generator",
            "window_s": window_s,
            "sample": sample,
            "bridges": self.streams.values().filter(|log| log.relayed).count() / 2,
            "copies_off_sample": self.off_sample,
            "caller_to_agent": directions[0],
            "agent_to_caller": directions[1],
            "both": both,
        })
    }
}

fn delay_stats(sorted_ns: &[u32]) -> serde_json::Map<String, serde_json::Value> {
    let ms = |ns: u32| (f64::from(ns) / 1e3).round() / 1e3;
    let quantile = |q: f64| {
        let last = sorted_ns.len().saturating_sub(1);
        sorted_ns
            .get(((last as f64) * q).round() as usize)
            .map(|&ns| ms(ns))
    };
    let over = |limit_ns: u32| sorted_ns.iter().filter(|&&ns| ns > limit_ns).count();
    let mut stats = serde_json::Map::new();
    stats.insert("delay_p50_ms".into(), quantile(0.5).into());
    stats.insert("delay_p99_ms".into(), quantile(0.99).into());
    stats.insert("delay_p999_ms".into(), quantile(0.999).into());
    stats.insert(
        "delay_max_ms".into(),
        sorted_ns.last().map(|&ns| ms(ns)).into(),
    );
    stats.insert("delay_over_1ms".into(), over(1_000_000).into());
    stats.insert("delay_over_5ms".into(), over(5_000_000).into());
    stats
}
