//! Call records: a start row when a call arrives and the full record when it ends, with the
//! outcome decided in one place from how the call ended and what the flow knows.

use std::time::{Instant, SystemTime};

use chrono::{DateTime, Utc};

use super::caller::Call;
use super::{Output, Record, Switchboard};
use crate::cdr::{CallEvent, CallRecord, CallStart, DtmfMode, Outcome, TransferMode};
use crate::ivr::{FlowEnding, FlowSummary};
use crate::media::dtmf::DtmfSource;
use crate::media::leg::RtpReceived;
use crate::sip::message;
use crate::sip::transport::Peer;

/// Why a call ended; with what the flow knows, it decides the record's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    CallerHungUp,
    CallerCancelled,
    MaxDuration,
    RtpTimeout,
    AckTimeout,
    MediaFailed,
    /// The call flow finished (goodbye played) and hung up.
    FlowEnded,
    /// The caller was transferred by REFER and the transfer succeeded.
    Transferred,
    /// Bridged to an agent, who hung up first.
    AgentHungUp,
    /// The service stopped (graceful stop's grace ran out) while the call was up.
    ServiceStopped,
    Rejected(u16),
    /// A resident called back did not answer (or was busy, or refused): the SIP status.
    NotReached(u16),
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::CallerHungUp => "caller_hung_up",
            EndReason::CallerCancelled => "caller_cancelled",
            EndReason::MaxDuration => "max_duration",
            EndReason::RtpTimeout => "rtp_timeout",
            EndReason::AckTimeout => "ack_timeout",
            EndReason::MediaFailed => "media_failed",
            EndReason::FlowEnded => "flow_ended",
            EndReason::Transferred => "transferred",
            EndReason::AgentHungUp => "agent_hung_up",
            EndReason::ServiceStopped => "service_stopped",
            EndReason::Rejected(_) => "rejected",
            EndReason::NotReached(_) => "not_reached",
        }
    }
}

/// What the record needs that only the switchboard sees.
#[derive(Debug, Clone, Default)]
pub(super) struct CallFacts {
    pub(super) caller: String,
    pub(super) trunk: String,
    pub(super) arrived: Option<SystemTime>,
    pub(super) ivr_answered: Option<SystemTime>,
    pub(super) agent_answered: Option<SystemTime>,
    pub(super) agent: Option<String>,
    pub(super) transfer_mode: Option<TransferMode>,
    /// When the ACD sent the call on to its group's overflow group, and which.
    pub(super) overflowed_to: Option<(SystemTime, String)>,
    /// A callback attempt: the Call-ID of the call that asked for it.
    pub(super) callback_of: Option<String>,
}

impl CallFacts {
    pub(super) fn new(invite: &rsip::Request, from: Peer, arrived: SystemTime) -> Self {
        Self {
            caller: message::header_value(invite, "From")
                .map(caller_number)
                .unwrap_or_default(),
            trunk: format!(
                "{}:{}",
                from.transport.via_name().to_ascii_lowercase(),
                from.addr
            ),
            arrived: Some(arrived),
            ..Self::default()
        }
    }
}

impl Switchboard {
    /// The facts of a new call; a trunk's call carries the trunk's name and the caller's
    /// number in E.164.
    pub(super) fn call_facts(&self, invite: &rsip::Request, from: Peer, now: Instant) -> CallFacts {
        let mut facts = CallFacts::new(invite, from, self.wall(now));
        if let Some(trunk) = self.identify_trunk_quietly(from, invite) {
            facts.trunk = trunk.name;
            facts.caller = trunk.caller;
        }
        facts
    }
}

fn utc(time: SystemTime) -> DateTime<Utc> {
    DateTime::<Utc>::from(time)
}

impl Switchboard {
    pub(super) fn record_start(&mut self, call_id: &str, facts: &CallFacts) {
        let start = CallStart {
            call_id: call_id.to_owned(),
            caller: Some(facts.caller.clone()).filter(|c| !c.is_empty()),
            trunk: facts.trunk.clone(),
            arrived: utc(facts.arrived.unwrap_or(SystemTime::UNIX_EPOCH)),
        };
        self.push(Output::Record(Record::Started(start)));
    }

    /// A call refused before it was answered (no common codec, no port...): still one record.
    pub(super) fn record_rejected(
        &mut self,
        now: Instant,
        invite: &rsip::Request,
        from: Peer,
        status: u16,
    ) {
        let call_id = message::call_id(invite).unwrap_or_default().to_owned();
        let wall = self.wall(now);
        let facts = self.call_facts(invite, from, now);
        self.record_start(&call_id, &facts);
        let record = CallRecord {
            call_id: call_id.clone(),
            caller: Some(facts.caller).filter(|c| !c.is_empty()),
            trunk: facts.trunk,
            arrived: utc(wall),
            ivr_answered: None,
            language_chosen: None,
            group_chosen: None,
            queue_entered: None,
            agent_answered: None,
            ended: utc(wall),
            language: None,
            menu_path: String::new(),
            dtmf_mode: DtmfMode::None,
            enterprise: None,
            agent: None,
            transfer_mode: None,
            outcome: Outcome::Rejected,
            rtp_packets: 0,
            rtp_lost: 0,
            rtp_jitter_ms: 0.0,
            callback_of: None,
        };
        let event = CallEvent {
            call_id,
            seq: 0,
            at: utc(wall),
            kind: "rejected".to_owned(),
            detail: format!("answered {status} before the call was set up"),
        };
        let reason = super::EndReason::Rejected(status);
        self.emit_record(
            Box::new(record),
            vec![event],
            reason,
            RtpReceived::default(),
        );
    }

    /// The finished call's record and audit steps (receive statistics still to fill in).
    pub(super) fn record_end(
        &self,
        now: Instant,
        call: &Call,
        reason: EndReason,
    ) -> (Box<CallRecord>, Vec<CallEvent>) {
        let summary = call.flow.summary();
        let facts = &call.facts;
        let outcome = outcome(reason, facts, &summary);
        let ended = self.wall(now);
        let call_id = call.call_id.clone();
        let overflow_step = facts
            .overflowed_to
            .as_ref()
            .map(|(at, group)| (*at, "overflowed".to_owned(), format!("to group {group}")));
        let mut steps: Vec<_> = summary.steps.iter().cloned().chain(overflow_step).collect();
        steps.sort_by_key(|(at, _, _)| *at);
        let events = steps
            .into_iter()
            .enumerate()
            .map(|(seq, (at, kind, detail))| CallEvent {
                call_id: call_id.clone(),
                seq: u32::try_from(seq).unwrap_or(u32::MAX),
                at: utc(at),
                kind,
                detail,
            })
            .collect();
        let record = CallRecord {
            call_id,
            caller: Some(facts.caller.clone()).filter(|c| !c.is_empty()),
            trunk: facts.trunk.clone(),
            arrived: utc(facts.arrived.unwrap_or(ended)),
            ivr_answered: facts.ivr_answered.map(utc),
            language_chosen: summary.language_chosen.map(utc),
            group_chosen: summary.group_chosen.map(utc),
            queue_entered: summary.queue_entered.map(utc),
            agent_answered: facts.agent_answered.map(utc),
            ended: utc(ended),
            language: summary.language.clone(),
            menu_path: summary.path.clone(),
            dtmf_mode: match call.dtmf_source {
                Some(DtmfSource::Rfc4733) => DtmfMode::Rfc4733,
                Some(DtmfSource::SipInfo) => DtmfMode::SipInfo,
                Some(DtmfSource::Inband) => DtmfMode::Inband,
                None => DtmfMode::None,
            },
            enterprise: summary.group.clone(),
            agent: facts.agent.clone(),
            transfer_mode: facts.transfer_mode,
            outcome,
            rtp_packets: 0,
            rtp_lost: 0,
            rtp_jitter_ms: 0.0,
            callback_of: facts.callback_of.clone(),
        };
        (Box::new(record), events)
    }

    pub(super) fn emit_record(
        &mut self,
        mut record: Box<CallRecord>,
        events: Vec<CallEvent>,
        reason: EndReason,
        rtp: RtpReceived,
    ) {
        record.rtp_packets = rtp.packets;
        record.rtp_lost = rtp.lost;
        record.rtp_jitter_ms = rtp.jitter_ms;
        self.push(Output::Record(Record::Ended {
            record,
            events,
            reason,
        }));
    }
}

/// Exactly one outcome per call: how it ended first, then where the flow had got to.
fn outcome(reason: EndReason, facts: &CallFacts, summary: &FlowSummary) -> Outcome {
    if facts.agent_answered.is_some() {
        return Outcome::Connected;
    }
    match reason {
        EndReason::Transferred => return Outcome::Transferred,
        EndReason::Rejected(_) => return Outcome::Rejected,
        EndReason::MediaFailed | EndReason::AckTimeout => return Outcome::Error,
        EndReason::ServiceStopped => return Outcome::Interrupted,
        EndReason::NotReached(_) => return Outcome::NotReached,
        // Sent on to the overflow group, and no agent there answered either.
        _ if facts.overflowed_to.is_some() => return Outcome::Overflowed,
        _ => {}
    }
    match summary.ending {
        Some(FlowEnding::Closed) => Outcome::Closed,
        Some(FlowEnding::QueueGaveUp) => Outcome::QueueTimeout,
        Some(FlowEnding::TransferFailed) => Outcome::TransferFailed,
        Some(FlowEnding::NoInput) if summary.queue_entered.is_none() => Outcome::NoInput,
        Some(FlowEnding::CallbackRequested) => Outcome::CallbackRequested,
        _ if summary.queue_entered.is_some() => Outcome::AbandonedQueue,
        _ if summary.heard_information && summary.group.is_none() => Outcome::InfoOnly,
        _ => Outcome::AbandonedMenu,
    }
}

/// The caller's number from their From header (`"x" <sip:37060000000@host>` → `37060000000`).
pub(super) fn caller_number(from: &str) -> String {
    let uri = match (from.find('<'), from.find('>')) {
        (Some(open), Some(close)) if open < close => &from[open + 1..close],
        _ => from.split(';').next().unwrap_or_default(),
    };
    uri.trim()
        .trim_start_matches("sips:")
        .trim_start_matches("sip:")
        .trim_start_matches("tel:")
        .split('@')
        .next()
        .unwrap_or_default()
        .to_owned()
}
