//! The agent leg of a bridged call (B2BUA): we INVITE the agent's phone as a UAC, and once it
//! answers the media engine relays RTP between caller and agent. BYE on either side ends both;
//! a caller who hangs up while the agent rings gets the agent's INVITE cancelled.

use std::cmp::Reverse;
use std::time::Instant;

use bytes::Bytes;
use rand::Rng;
use rsip::headers::UntypedHeader;
use tracing::{debug, info, warn};

use super::{
    cseq_number, CallRef, CallState, EndReason, Endpoint, MediaCommand, MediaSession, Output,
    Pending2xx, TimerKind, USER_AGENT,
};
use crate::acd::{AcdInput, AgentId, CallId, FailReason};
use crate::sdp::{self, Codec, SessionDescription};
use crate::sip::dialog::{Dialog, DialogKey};
use crate::sip::message;
use crate::sip::transaction::TxKey;
use crate::sip::transport::{Peer, TransportKind};

/// What the agent's phone is rung with: the call already sorted for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct AgentCall {
    pub(super) target: String,
    pub(super) display: String,
    pub(super) language: String,
    pub(super) path: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LegState {
    Calling,
    Answered,
    Terminating,
}

#[derive(Debug)]
pub(super) struct AgentLeg {
    pub(super) caller: CallRef,
    pub(super) agent: AgentId,
    pub(super) span: tracing::Span,
    pub(super) state: LegState,
    pub(super) peer: Peer,
    invite: rsip::Request,
    pub(super) invite_tx: Option<TxKey>,
    local_tag: String,
    pub(super) dialog: Option<Dialog>,
    pub(super) rtp_port: u16,
    /// The ACK we sent for the 2xx, resent when the 2xx is retransmitted.
    ack: Option<Bytes>,
    pub(super) media_started: bool,
    /// Our 2xx to the agent's re-INVITE (hold, resume), resent over UDP until the ACK.
    pending_2xx: Option<Pending2xx>,
}

impl Endpoint {
    /// Rings an agent for a caller (the ACD chose them); the answer bridges them, a failure
    /// goes back to the ACD, which tries someone else.
    pub(super) fn ring_agent(
        &mut self,
        now: Instant,
        caller: CallRef,
        agent_id: AgentId,
        agent: AgentCall,
        peer: Peer,
    ) {
        let Ok(target_uri) = rsip::Uri::try_from(agent.target.as_str()) else {
            warn!(target = %agent.target, "agent URI does not parse");
            return self.agent_unreachable(now, caller, agent_id);
        };
        let Some(rtp_port) = self.ports.allocate() else {
            warn!("no free RTP port for the agent leg");
            return self.agent_unreachable(now, caller, agent_id);
        };
        let caller_number = self
            .calls
            .get(&caller)
            .and_then(|call| message::header_value(&call.invite, "From"))
            .map(caller_number)
            .unwrap_or_default();
        let local_tag = self.random_token();
        let call_id = format!("{}@{}", self.random_token(), self.host_port());
        let session_id = self.rng.gen_range(1..u64::from(u32::MAX));
        let offer = sdp::offer(
            &self.local_media(rtp_port, session_id, 1),
            &[Codec::Pcmu, Codec::Pcma],
        );
        let host = self.host_port();
        let display = agent.display.replace(['"', '\\', '\r', '\n'], "");
        let mut headers = rsip::Headers::default();
        headers.push(rsip::headers::Via::new(self.via(peer.transport)).into());
        headers.push(rsip::headers::MaxForwards::new("70").into());
        headers.push(
            rsip::headers::From::new(format!("\"{display}\" <sip:19118@{host}>;tag={local_tag}"))
                .into(),
        );
        headers.push(rsip::headers::To::new(format!("<{}>", agent.target)).into());
        headers.push(rsip::headers::CallId::new(call_id.clone()).into());
        headers.push(rsip::headers::CSeq::new("1 INVITE").into());
        headers.push(rsip::headers::Contact::new(format!("<sip:19118@{host}>")).into());
        headers.push(rsip::headers::UserAgent::new(USER_AGENT).into());
        headers.push(rsip::Header::Other(
            "X-Hotline-Language".into(),
            agent.language.clone(),
        ));
        headers.push(rsip::Header::Other(
            "X-Hotline-Path".into(),
            sanitize(&agent.path),
        ));
        headers.push(rsip::Header::Other(
            "X-Hotline-Caller".into(),
            sanitize(&caller_number),
        ));
        let mut invite = rsip::Request {
            method: rsip::Method::Invite,
            uri: target_uri,
            version: rsip::Version::V2,
            headers,
            body: Vec::new(),
        };
        message::set_body(
            &mut invite.headers,
            &mut invite.body,
            "application/sdp",
            offer.into_bytes(),
        );
        let span = tracing::info_span!("agent_leg", call_id = %call_id, agent = %agent.target);
        span.in_scope(
            || info!(%caller, language = %agent.language, path = %agent.path, "ringing agent"),
        );
        let id = CallRef(self.next_call);
        self.next_call += 1;
        match self.transactions.send_request(now, invite.clone(), peer) {
            Ok(key) => {
                self.by_leg_invite_tx.insert(key.clone(), id);
                self.by_leg_dialog.insert(
                    DialogKey {
                        call_id,
                        local_tag: local_tag.clone(),
                    },
                    id,
                );
                self.legs.insert(
                    id,
                    AgentLeg {
                        caller,
                        agent: agent_id,
                        span,
                        state: LegState::Calling,
                        peer,
                        invite,
                        invite_tx: Some(key),
                        local_tag,
                        dialog: None,
                        rtp_port,
                        ack: None,
                        media_started: false,
                        pending_2xx: None,
                    },
                );
                if let Some(call) = self.calls.get_mut(&caller) {
                    call.agent_legs.push(id);
                }
            }
            Err(error) => {
                warn!(%error, "agent INVITE could not be sent");
                self.ports.release(rtp_port);
                self.agent_unreachable(now, caller, agent_id);
            }
        }
    }

    /// The ACD's choice could not even be rung: it tries someone else.
    pub(super) fn agent_unreachable(&mut self, now: Instant, caller: CallRef, agent: AgentId) {
        let input = AcdInput::AgentFailed {
            call: CallId(caller.0),
            agent,
            reason: FailReason::Unreachable,
        };
        self.report_to_acd(now, input);
    }

    /// A response on an agent leg's INVITE transaction. True when the key was a leg's.
    pub(super) fn leg_response(
        &mut self,
        now: Instant,
        key: &TxKey,
        response: &rsip::Response,
    ) -> bool {
        let Some(&id) = self.by_leg_invite_tx.get(key) else {
            return false;
        };
        let status = response.status_code.code();
        if status < 200 {
            return true;
        }
        if status >= 300 {
            self.by_leg_invite_tx.remove(key);
            self.leg_failed(now, id, status);
            return true;
        }
        self.leg_answered(now, id, response);
        true
    }

    fn leg_answered(&mut self, now: Instant, id: CallRef, response: &rsip::Response) {
        let via = |transport| self.via(transport);
        let Some(leg) = self.legs.get(&id) else {
            return;
        };
        let via = via(leg.peer.transport);
        if let Some(ack) = &leg.ack {
            // A retransmitted 2xx: our ACK was lost.
            let bytes = ack.clone();
            let peer = leg.peer;
            self.outputs.push_back(Output::Transmit { to: peer, bytes });
            return;
        }
        let target = message::contact_uri(response).unwrap_or_else(|| leg.invite.uri.clone());
        let dialog = match Dialog::from_uac(&leg.invite, response, &leg.local_tag, target, leg.peer)
        {
            Ok(dialog) => dialog,
            Err(error) => {
                warn!(%error, "agent's 2xx unusable");
                return self.leg_failed(now, id, 502);
            }
        };
        let ack = dialog.ack(via, 1);
        let ack_bytes = Bytes::from(ack.to_string());
        let negotiated = SessionDescription::parse(&response.body)
            .ok()
            .and_then(|answer| sdp::parse_answer(&[Codec::Pcmu, Codec::Pcma], &answer).ok());
        let caller = leg.caller;
        let peer = leg.peer;
        self.outputs.push_back(Output::Transmit {
            to: peer,
            bytes: ack_bytes.clone(),
        });
        if let Some(leg) = self.legs.get_mut(&id) {
            leg.ack = Some(ack_bytes);
            leg.dialog = Some(dialog);
            leg.state = LegState::Answered;
            leg.invite_tx = None;
        }
        let caller_waiting = self
            .calls
            .get(&caller)
            .is_some_and(|call| call.state != CallState::Terminating && !call.bridged);
        let agent_id = self.legs.get(&id).map(|leg| leg.agent.clone());
        // The ACD has the last word: an answer after the ring timeout belongs to nobody.
        let accepted = match (caller_waiting, agent_id, self.acd.as_mut()) {
            (true, Some(agent), Some(acd)) => acd
                .handle_input(
                    AcdInput::AgentAnswered {
                        call: CallId(caller.0),
                        agent,
                    },
                    now,
                )
                .map_err(|error| debug!(%error, "late answer refused"))
                .is_ok(),
            _ => false,
        };
        self.drain_acd(now);
        let caller_waiting = caller_waiting && accepted;
        let Some(negotiated) = negotiated.filter(|_| caller_waiting) else {
            // Caller gone meanwhile, or no usable answer: the agent is released at once.
            return self.hang_up_leg(now, id);
        };
        if let Some(leg) = self.legs.get(&id) {
            leg.span
                .in_scope(|| info!(codec = ?negotiated.codec, "agent answered: bridging"));
        }
        let session = MediaSession {
            remote: negotiated.remote_rtp,
            codec: negotiated.codec,
            payload_type: negotiated.payload_type,
            telephone_event: negotiated.telephone_event,
            // The agent's phone is on our network; the caller's side watches for dead callers.
            inactivity_timeout: None,
        };
        let local_port = self
            .legs
            .get(&id)
            .map(|leg| leg.rtp_port)
            .unwrap_or_default();
        if let Some(leg) = self.legs.get_mut(&id) {
            leg.media_started = true;
        }
        if let Some(call) = self.calls.get_mut(&caller) {
            call.play_generation += 1;
        }
        self.outputs
            .push_back(Output::Media(MediaCommand::StopPlayback { call: caller }));
        self.outputs.push_back(Output::Media(MediaCommand::Start {
            call: id,
            local_port,
            session,
        }));
        self.outputs
            .push_back(Output::Media(MediaCommand::Bridge { caller, agent: id }));
        let wall = self.wall(now);
        let agent = self.legs.get(&id).map(|leg| leg.agent.0.clone());
        if let Some(call) = self.calls.get_mut(&caller) {
            call.bridged = true;
            call.facts.agent_answered = Some(wall);
            call.facts.agent = agent;
        }
    }

    fn leg_failed(&mut self, now: Instant, id: CallRef, status: u16) {
        let Some(leg) = self.remove_leg(id) else {
            return;
        };
        leg.span
            .in_scope(|| info!(status, "agent did not take the call"));
        // A ring the ACD stopped itself (timeout, another agent answered) is no news to it.
        if leg.state == LegState::Terminating {
            return;
        }
        let reason = match status {
            486 | 600 => FailReason::Busy,
            603 => FailReason::Declined,
            480 | 487 => FailReason::NoAnswer,
            _ => FailReason::Unreachable,
        };
        self.report_to_acd(
            now,
            AcdInput::AgentFailed {
                call: CallId(leg.caller.0),
                agent: leg.agent,
                reason,
            },
        );
    }

    /// The transport could not reach `peer` (a TCP connect failed): agents being rung there
    /// are unreachable now, not after Timer B, and a caller there will not answer our BYE
    /// (RFC 3261 §17.1.1.2: a transport error counts as a 503 / timeout).
    pub fn handle_transport_error(&mut self, now: Instant, peer: Peer) {
        let ringing: Vec<CallRef> = self
            .legs
            .iter()
            .filter(|(_, leg)| leg.peer == peer && leg.state == LegState::Calling)
            .map(|(id, _)| *id)
            .collect();
        for id in ringing {
            self.by_leg_invite_tx.retain(|_, owner| *owner != id);
            self.leg_failed(now, id, 503);
        }
        // Our BYE to a caller whose connection is gone will not be answered either.
        let unreachable: Vec<CallRef> = self
            .by_bye_tx
            .values()
            .copied()
            .filter(|id| {
                self.calls
                    .get(id)
                    .is_some_and(|call| call.dialog.flow == peer)
            })
            .collect();
        for id in unreachable {
            self.by_bye_tx.retain(|_, owner| *owner != id);
            self.finish(now, id);
        }
    }

    /// Timer B on the agent's INVITE: nobody there.
    pub(super) fn leg_timeout(&mut self, now: Instant, key: &TxKey) -> bool {
        match self.by_leg_invite_tx.remove(key) {
            Some(id) => {
                self.leg_failed(now, id, 408);
                true
            }
            None => false,
        }
    }

    /// A request inside an agent leg's dialog (BYE from the agent, re-INVITE for hold...).
    pub(super) fn leg_request(
        &mut self,
        now: Instant,
        key: TxKey,
        id: CallRef,
        request: &rsip::Request,
    ) {
        match request.method {
            rsip::Method::Bye => {
                let response = self.response(request, 200, None, vec![]);
                self.respond(now, &key, response);
                let Some(leg) = self.remove_leg(id) else {
                    return;
                };
                self.report_to_acd(
                    now,
                    AcdInput::CallEnded {
                        call: CallId(leg.caller.0),
                    },
                );
                leg.span.in_scope(|| info!("agent hung up"));
                self.hang_up(now, leg.caller, EndReason::AgentHungUp);
            }
            rsip::Method::Invite => {
                // Hold and resume from the agent's phone: same port, codecs as offered.
                let Some(leg) = self.legs.get(&id) else {
                    return;
                };
                let answer = SessionDescription::parse(&request.body)
                    .ok()
                    .and_then(|offer| {
                        let local = self.local_media(leg.rtp_port, 1, 2);
                        sdp::answer(&offer, &local).ok()
                    });
                match answer {
                    Some((_, body)) => {
                        let tag = leg.local_tag.clone();
                        let mut response = self.response(request, 200, Some(&tag), vec![]);
                        response.headers.push(
                            rsip::headers::Contact::new(format!(
                                "<sip:19118@{}>",
                                self.host_port()
                            ))
                            .into(),
                        );
                        message::set_body(
                            &mut response.headers,
                            &mut response.body,
                            "application/sdp",
                            body.into_bytes(),
                        );
                        if let Some(leg) = self.legs.get_mut(&id) {
                            leg.pending_2xx = Some(Pending2xx::new(
                                Bytes::from(response.to_string()),
                                cseq_number(request).unwrap_or(0),
                                now,
                                &self.config.timers,
                            ));
                            self.timers.push(Reverse((
                                now + self.config.timers.t1,
                                TimerKind::LegRetransmit2xx(id),
                            )));
                        }
                        self.respond(now, &key, response);
                    }
                    None => {
                        let response = self.response(request, 488, None, vec![]);
                        self.respond(now, &key, response);
                    }
                }
            }
            _ => {
                let response = self.response(request, 200, None, vec![]);
                self.respond(now, &key, response);
            }
        }
    }

    /// The agent's ACK for our 2xx to its re-INVITE: no more resends.
    pub(super) fn leg_ack(&mut self, id: CallRef, cseq: u32) {
        if let Some(leg) = self.legs.get_mut(&id) {
            if leg.pending_2xx.as_ref().is_some_and(|p| p.cseq == cseq) {
                leg.pending_2xx = None;
            }
        }
    }

    /// Resends our 2xx to the agent's re-INVITE (UDP: T1 doubling to T2); no ACK after 64·T1
    /// means the agent's phone is gone, and we end the call (caller and agent).
    pub(super) fn leg_retransmit_2xx(&mut self, now: Instant, id: CallRef) {
        let t2 = self.config.timers.t2;
        let Some(leg) = self.legs.get_mut(&id) else {
            return;
        };
        let Some(pending) = leg.pending_2xx.as_mut() else {
            return;
        };
        if now >= pending.give_up_at {
            leg.pending_2xx = None;
            leg.span
                .in_scope(|| warn!("no ACK for our 2xx to the agent's re-INVITE: hanging up"));
            let caller = leg.caller;
            return self.hang_up(now, caller, EndReason::AckTimeout);
        }
        if !leg.peer.transport.is_reliable() {
            self.outputs.push_back(Output::Transmit {
                to: leg.peer,
                bytes: pending.bytes.clone(),
            });
        }
        let next = pending.next_resend(now, t2);
        self.timers
            .push(Reverse((next, TimerKind::LegRetransmit2xx(id))));
    }

    /// Ends the agent side: CANCEL while it rings, BYE once answered.
    pub(super) fn hang_up_leg(&mut self, now: Instant, id: CallRef) {
        let Some(leg) = self.legs.get_mut(&id) else {
            return;
        };
        match leg.state {
            LegState::Calling => {
                if let Some(key) = leg.invite_tx.clone() {
                    leg.state = LegState::Terminating;
                    if let Err(error) = self.transactions.cancel(now, &key) {
                        debug!(%error, "agent INVITE could not be cancelled");
                    }
                    // The 487 (or a late 2xx, which gets ACK + BYE) finishes the leg.
                }
            }
            LegState::Answered => {
                leg.state = LegState::Terminating;
                let transport = leg.peer.transport;
                let via = self.via(transport);
                let Some(leg) = self.legs.get_mut(&id) else {
                    return;
                };
                let peer = leg.peer;
                let bye = leg.dialog.as_mut().map(|dialog| {
                    dialog.request(
                        rsip::Method::Bye,
                        via,
                        vec![rsip::headers::UserAgent::new(USER_AGENT).into()],
                    )
                });
                leg.span.in_scope(|| info!("hanging up the agent"));
                if let Some(bye) = bye {
                    if let Err(error) = self.transactions.send_request(now, bye, peer) {
                        debug!(%error, "BYE to the agent could not be sent");
                    }
                }
                self.remove_leg(id);
            }
            LegState::Terminating => {}
        }
    }

    /// Forgets a leg: media stopped, port returned, maps cleaned.
    pub(super) fn remove_leg(&mut self, id: CallRef) -> Option<AgentLeg> {
        let leg = self.legs.remove(&id)?;
        self.by_leg_invite_tx.retain(|_, owner| *owner != id);
        self.by_leg_dialog.retain(|_, owner| *owner != id);
        if leg.media_started {
            self.outputs.push_back(Output::Media(MediaCommand::Stop {
                call: id,
                recorded: false,
            }));
        }
        self.ports.release(leg.rtp_port);
        if let Some(call) = self.calls.get_mut(&leg.caller) {
            call.agent_legs.retain(|leg| *leg != id);
            if call.agent_legs.is_empty() {
                call.bridged = false;
            }
        }
        Some(leg)
    }
}

/// `sip:user@1.2.3.4:5062` → where to send (UDP; agents' phones listen on it).
pub(super) fn agent_peer(target: &str) -> Option<Peer> {
    let uri = rsip::Uri::try_from(target).ok()?;
    let ip: std::net::IpAddr = uri
        .host_with_port
        .host
        .to_string()
        .trim_matches(['[', ']'])
        .parse()
        .ok()?;
    let port = uri
        .host_with_port
        .port
        .map(|port| *port.value())
        .unwrap_or(5060);
    let transport = if target.to_ascii_lowercase().contains("transport=tcp") {
        TransportKind::Tcp
    } else {
        TransportKind::Udp
    };
    Some(Peer {
        transport,
        addr: std::net::SocketAddr::new(ip, port),
    })
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

/// Header values we build from caller input must stay on one line.
fn sanitize(value: &str) -> String {
    value.chars().filter(|c| !c.is_control()).collect()
}
