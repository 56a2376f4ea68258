//! The agent leg of a bridged call (B2BUA): the user agent calls the agent's phone, and once
//! it answers the media driver relays RTP between caller and agent. BYE on either side ends
//! both; a caller who hangs up while the agent rings gets the agent's INVITE cancelled.

use std::time::Instant;

use tracing::{debug, info, warn};

use super::caller::media_session;
use super::{leg_of, Switchboard};
use crate::acd::{AcdInput, AgentId, CallId, FailReason};
use crate::media::leg::MediaCommand;
use crate::sdp::{MediaEncryption, Negotiated};
use crate::sip::transport::{Peer, TransportKind};
use crate::sip::ua::{OutgoingCall, SessionId};

/// What the agent's phone is rung with: the call already sorted for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct AgentCall {
    pub(super) target: String,
    pub(super) display: String,
    pub(super) language: String,
    pub(super) path: String,
    /// The resident's number, shown on the agent's phone.
    pub(super) caller_number: String,
    /// The group's SRTP policy for the agent's leg.
    pub(super) media_encryption: MediaEncryption,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LegState {
    Calling,
    Answered,
    /// We ended it: cancelled the ring or hung up the answered phone.
    Terminating,
}

#[derive(Debug)]
pub(super) struct AgentLeg {
    pub(super) caller: SessionId,
    pub(super) agent: AgentId,
    pub(super) span: tracing::Span,
    pub(super) state: LegState,
    pub(super) rtp_port: u16,
    pub(super) media_started: bool,
    /// The agent put the caller on hold (its re-INVITE was sendonly or inactive): the caller
    /// hears music until it resumes.
    pub(super) holding: bool,
}

impl Switchboard {
    /// Seeds the SRTP key generator (32 bytes from the OS; see `UserAgent::seed_key_generator`).
    pub fn seed_key_generator(&mut self, seed: [u8; 32]) {
        self.ua.seed_key_generator(seed);
    }

    /// A group's `media_encryption` (off for a group no longer in the routing).
    pub(super) fn group_media_encryption(&self, group: &str) -> MediaEncryption {
        self.acd
            .as_ref()
            .and_then(|acd| acd.routing().groups.get(group))
            .map_or(MediaEncryption::Off, |group| group.media_encryption)
    }

    /// Rings an agent for a caller (the ACD chose them); the answer bridges them, a failure
    /// goes back to the ACD, which tries someone else.
    pub(super) fn ring_agent(
        &mut self,
        now: Instant,
        caller: SessionId,
        agent_id: AgentId,
        agent: AgentCall,
        peer: Peer,
    ) {
        let Some(rtp_port) = self.ports.allocate() else {
            warn!("no free RTP port for the agent leg");
            return self.agent_unreachable(now, caller, agent_id);
        };
        let caller_number = agent.caller_number.clone();
        // The agent's phone shows the caller's number, so its call history can call back.
        let outgoing = OutgoingCall {
            target: agent.target.clone(),
            peer,
            display: agent.display,
            from_user: Some(caller_number.clone()).filter(|number| !number.is_empty()),
            headers: vec![
                ("X-Hotline-Language".into(), agent.language.clone()),
                ("X-Hotline-Path".into(), agent.path.clone()),
                ("X-Hotline-Caller".into(), caller_number),
            ],
            rtp_port,
            credentials: None,
            media_encryption: agent.media_encryption,
        };
        match self.ua.invite(now, outgoing) {
            Ok(id) => {
                let span =
                    tracing::info_span!(parent: &self.ua.span(id), "agent", agent = %agent.target);
                span.in_scope(
                    || info!(caller = %caller, language = %agent.language, path = %agent.path, "ringing agent"),
                );
                self.legs.insert(
                    id,
                    AgentLeg {
                        caller,
                        agent: agent_id,
                        span,
                        state: LegState::Calling,
                        rtp_port,
                        media_started: false,
                        holding: false,
                    },
                );
                if let Some(call) = self.calls.get_mut(&caller) {
                    call.agent_legs.push(id);
                }
            }
            Err(error) => {
                warn!(%error, target = %agent.target, "agent could not be called");
                self.ports.release(rtp_port);
                self.agent_unreachable(now, caller, agent_id);
            }
        }
    }

    /// The agent's phone answered: bridge it to the caller if the caller still waits and the
    /// ACD agrees (an answer after the ring timeout belongs to nobody), else hang it up.
    pub(super) fn leg_answered(
        &mut self,
        now: Instant,
        id: SessionId,
        negotiated: Option<Negotiated>,
    ) {
        let Some(leg) = self.legs.get_mut(&id) else {
            return;
        };
        leg.state = LegState::Answered;
        let (caller, agent) = (leg.caller, leg.agent.clone());
        if caller.0 >= super::callback::CALLBACK_IDS {
            return self.callback_agent_answered(now, id, negotiated);
        }
        let Some(negotiated) = negotiated else {
            // Nothing to bridge with: the phone is released and the ACD tries someone else.
            leg.span
                .in_scope(|| warn!("agent's answer has no usable SDP"));
            self.hang_up_leg(now, id);
            let reason = FailReason::Unreachable;
            let call = CallId(caller.0);
            return self.report_to_acd(
                now,
                AcdInput::AgentFailed {
                    call,
                    agent,
                    reason,
                },
            );
        };
        let caller_waiting = self
            .calls
            .get(&caller)
            .is_some_and(|call| call.state != super::caller::CallState::Ending && !call.bridged);
        let accepted = caller_waiting
            && self.acd.as_mut().is_some_and(|acd| {
                let input = AcdInput::AgentAnswered {
                    call: CallId(caller.0),
                    agent: agent.clone(),
                };
                acd.handle_input(input, now)
                    .map_err(|error| debug!(%error, "late answer refused"))
                    .is_ok()
            });
        if !accepted {
            // Caller gone meanwhile, or the ring already given up: the agent is released.
            return self.hang_up_leg(now, id);
        }
        let Some(leg) = self.legs.get_mut(&id) else {
            return;
        };
        leg.span
            .in_scope(|| info!(codec = ?negotiated.codec, "agent answered: bridging"));
        leg.media_started = true;
        let local_port = leg.rtp_port;
        self.stop_playback(caller);
        // The agent's phone is on our network; the caller's side watches for dead callers.
        let session = media_session(&negotiated, None);
        self.media(MediaCommand::Start {
            leg: leg_of(id),
            local_port,
            session,
        });
        self.media(MediaCommand::Bridge {
            caller: leg_of(caller),
            agent: leg_of(id),
        });
        let wall = self.wall(now);
        if let Some(call) = self.calls.get_mut(&caller) {
            call.bridged = true;
            call.facts.agent_answered = Some(wall);
            call.facts.agent = Some(agent.0);
        }
    }

    pub(super) fn leg_failed(&mut self, now: Instant, id: SessionId, status: u16) {
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
        let input = AcdInput::AgentFailed {
            call: CallId(leg.caller.0),
            agent: leg.agent,
            reason,
        };
        self.report_to_acd(now, input);
    }

    /// Ends the agent side: CANCEL while it rings (the final response removes the leg), BYE
    /// once answered (the leg is gone at once; the BYE finishes on its own).
    pub(super) fn hang_up_leg(&mut self, now: Instant, id: SessionId) {
        let Some(leg) = self.legs.get_mut(&id) else {
            return;
        };
        let answered = match leg.state {
            LegState::Terminating => return,
            LegState::Calling => false,
            LegState::Answered => true,
        };
        leg.state = LegState::Terminating;
        if answered {
            leg.span.in_scope(|| info!("hanging up the agent"));
        }
        self.ua.hang_up(now, id);
        if answered {
            self.remove_leg(id);
        }
    }

    /// The agent holds (or resumes) a bridged call: the relay stops and the caller hears the
    /// group's music on hold; on resume the music stops and the relay starts again.
    pub(super) fn agent_hold(&mut self, id: SessionId, holds: bool) {
        let Some(leg) = self.legs.get_mut(&id) else {
            return;
        };
        if leg.holding == holds {
            return;
        }
        leg.holding = holds;
        let caller = leg.caller;
        leg.span
            .in_scope(|| info!(holds, "the agent holds the caller"));
        let pair = (leg_of(caller), leg_of(id));
        if holds {
            self.media(MediaCommand::Unbridge {
                caller: pair.0,
                agent: pair.1,
            });
            self.play_hold_music(caller);
        } else {
            self.stop_playback(caller);
            self.media(MediaCommand::Bridge {
                caller: pair.0,
                agent: pair.1,
            });
        }
    }

    /// Whether an agent of this caller holds the call (the music loops until it resumes).
    pub(super) fn held_by_agent(&self, caller: SessionId) -> bool {
        self.calls.get(&caller).is_some_and(|call| {
            call.agent_legs
                .iter()
                .any(|leg| self.legs.get(leg).is_some_and(|leg| leg.holding))
        })
    }

    /// One piece of the caller's group music (else `[hotline] music`, else `queue_hold`), in
    /// the caller's language.
    pub(super) fn play_hold_music(&mut self, caller: SessionId) {
        let Some(queued) = self.calls.get(&caller).and_then(|call| call.queue.clone()) else {
            return;
        };
        let name = self
            .acd
            .as_ref()
            .map(|acd| acd.routing())
            .and_then(|routing| {
                let group = routing.groups.get(&queued.group);
                group
                    .and_then(|group| group.music.clone())
                    .or_else(|| routing.hotline.music.clone())
            })
            .map_or_else(|| "queue_hold".to_owned(), |music| music.value);
        let Some(prompt) = self.prompts.get(&queued.language, &name) else {
            return warn!(%name, language = %queued.language, "no music on hold to play");
        };
        let generation = self.bump_play_generation(caller);
        self.media(MediaCommand::Play {
            leg: leg_of(caller),
            prompts: vec![prompt],
            generation,
        });
    }

    /// Forgets a leg: media stopped, port returned, the caller told.
    pub(super) fn remove_leg(&mut self, id: SessionId) -> Option<AgentLeg> {
        let leg = self.legs.remove(&id)?;
        if leg.media_started {
            self.media(MediaCommand::Stop { leg: leg_of(id) });
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

/// `sip:user@1.2.3.4:5062` → where to send: UDP unless `transport=tcp`, TLS for `sips:` or
/// `transport=tls` (port 5061 when none is given).
pub(super) fn agent_peer(target: &str) -> Option<Peer> {
    let uri = rsip::Uri::try_from(target).ok()?;
    let ip: std::net::IpAddr = uri
        .host_with_port
        .host
        .to_string()
        .trim_matches(['[', ']'])
        .parse()
        .ok()?;
    let transport = TransportKind::of_uri(target);
    let port = uri
        .host_with_port
        .port
        .map(|port| *port.value())
        .unwrap_or(transport.default_port());
    Some(Peer {
        transport,
        addr: std::net::SocketAddr::new(ip, port),
    })
}
