//! Running a call's flow: feeding it keys (RTP, INFO), prompt ends and its timers, and
//! carrying out what it asks (prompts in the right language, timers, transfer, hang-up).

use std::cmp::Reverse;
use std::sync::Arc;
use std::time::Instant;

use rsip::headers::UntypedHeader;
use tracing::{debug, info, warn};

use super::{CallRef, CallState, EndReason, Endpoint, MediaCommand, Output, TimerKind};
use crate::ivr::{FlowAction, FlowEvent};
use crate::media::dtmf::info::parse_info_dtmf;
use crate::media::dtmf::DtmfSource;
use crate::media::prompts::Prompt;
use crate::sip::message;
use crate::sip::transaction::TxKey;

impl Endpoint {
    pub(super) fn handle_info(
        &mut self,
        now: Instant,
        key: TxKey,
        id: CallRef,
        request: &rsip::Request,
    ) {
        let content_type = message::header_value(request, "Content-Type").unwrap_or_default();
        if request.body.is_empty() {
            // An empty INFO is a keep-alive probe (RFC 6086 §4.2.2 allows it).
            let response = self.response(request, 200, None, vec![]);
            return self.respond(now, &key, response);
        }
        match parse_info_dtmf(content_type, &request.body) {
            Ok(digit) => {
                let response = self.response(request, 200, None, vec![]);
                self.respond(now, &key, response);
                self.digit(now, id, digit, DtmfSource::SipInfo);
            }
            Err(error) => {
                debug!(%error, "INFO body not understood");
                let accept =
                    vec![
                        rsip::headers::Accept::new("application/dtmf-relay, application/dtmf")
                            .into(),
                    ];
                let response = self.response(request, 415, None, accept);
                self.respond(now, &key, response);
            }
        }
    }

    pub(super) fn digit(&mut self, now: Instant, id: CallRef, digit: char, source: DtmfSource) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.dtmf_source.get_or_insert(source);
        call.span.in_scope(|| info!(%digit, %source, "DTMF"));
        self.flow_event(now, id, FlowEvent::Digit(digit));
    }

    /// Hands one event to the call's flow and carries out its answer.
    pub(super) fn flow_event(&mut self, now: Instant, id: CallRef, event: FlowEvent) {
        let clock = self.clock(now);
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if call.state == CallState::Terminating {
            return;
        }
        let span = call.span.clone();
        let _entered = span.enter();
        let actions = call.flow.handle(clock, event);
        for action in actions {
            match action {
                FlowAction::Play(prompts) => {
                    let found: Vec<Arc<Prompt>> = prompts
                        .iter()
                        .filter_map(|wanted| {
                            let prompt = self.prompts.get(&wanted.lang, &wanted.name);
                            if prompt.is_none() {
                                warn!(lang = %wanted.lang, name = %wanted.name, "prompt missing: skipped");
                            }
                            prompt
                        })
                        .collect();
                    if !found.is_empty() {
                        let generation = self.bump_play_generation(id);
                        self.outputs.push_back(Output::Media(MediaCommand::Play {
                            call: id,
                            prompts: found,
                            generation,
                        }));
                    }
                }
                FlowAction::StopPlayback => {
                    self.bump_play_generation(id);
                    self.outputs
                        .push_back(Output::Media(MediaCommand::StopPlayback { call: id }));
                }
                FlowAction::StartTimer { id: timer, after } => {
                    self.next_timer_generation += 1;
                    let generation = self.next_timer_generation;
                    if let Some(call) = self.calls.get_mut(&id) {
                        call.flow_timers.insert(timer, generation);
                    }
                    self.timers.push(Reverse((
                        now + after,
                        TimerKind::Flow(id, timer, generation),
                    )));
                }
                FlowAction::CancelTimer(timer) => {
                    if let Some(call) = self.calls.get_mut(&id) {
                        call.flow_timers.remove(&timer);
                    }
                }
                FlowAction::Transfer { target } => self.start_transfer(now, id, &target),
                FlowAction::Queue(queued) => self.enqueue(now, id, queued),
                FlowAction::HangUp => {
                    self.hang_up(now, id, EndReason::FlowEnded);
                    return;
                }
            }
        }
    }

    fn bump_play_generation(&mut self, id: CallRef) -> u64 {
        match self.calls.get_mut(&id) {
            Some(call) => {
                call.play_generation += 1;
                call.play_generation
            }
            None => 0,
        }
    }

    /// A flow timer fired: stale generations (restarted or cancelled timers) are dropped.
    pub(super) fn flow_timer(&mut self, now: Instant, id: CallRef, timer: u32, generation: u64) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if call.flow_timers.get(&timer) != Some(&generation) {
            return;
        }
        call.flow_timers.remove(&timer);
        self.flow_event(now, id, FlowEvent::Timer(timer));
    }
}
