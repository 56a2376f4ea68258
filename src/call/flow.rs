//! Running a caller's menu flow: handing it keys, prompt ends and its own timers, and carrying
//! out what it asks (prompts in the right language, timers, transfer, queue, hang-up).

use std::sync::Arc;
use std::time::Instant;

use tracing::warn;

use super::caller::CallState;
use super::record::EndReason;
use super::timers::Timer;
use super::{leg_of, Switchboard};
use crate::cdr::TransferMode;
use crate::ivr::{FlowAction, FlowEvent};
use crate::media::leg::MediaCommand;
use crate::media::prompts::Prompt;
use crate::sip::ua::SessionId;

impl Switchboard {
    /// Hands one event to the call's flow and carries out its answer.
    pub(super) fn flow_event(&mut self, now: Instant, id: SessionId, event: FlowEvent) {
        let clock = self.clock(now);
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if call.state == CallState::Ending {
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
                        self.media(MediaCommand::Play {
                            leg: leg_of(id),
                            prompts: found,
                            generation,
                        });
                    }
                }
                FlowAction::StopPlayback => self.stop_playback(id),
                FlowAction::StartTimer { id: timer, after } => {
                    let generation = self.timers.generation();
                    if let Some(call) = self.calls.get_mut(&id) {
                        call.flow_timers.insert(timer, generation);
                    }
                    self.timers
                        .start(now + after, Timer::Flow(id, timer, generation));
                }
                FlowAction::CancelTimer(timer) => {
                    if let Some(call) = self.calls.get_mut(&id) {
                        call.flow_timers.remove(&timer);
                    }
                }
                FlowAction::Transfer { target } => {
                    if let Some(call) = self.calls.get_mut(&id) {
                        call.transferring = true;
                        call.facts.transfer_mode = Some(TransferMode::Refer);
                        call.facts.agent = Some(target.clone());
                    }
                    self.ua.refer(now, id, &target);
                }
                FlowAction::Queue(queued) => self.enqueue(now, id, queued),
                FlowAction::RequestCallback { number } => self.callback_requested(now, id, number),
                FlowAction::CancelCallback => self.cancel_callback(now, id),
                FlowAction::HangUp => return self.hang_up(now, id, EndReason::FlowEnded),
            }
        }
    }

    /// Cuts what the caller hears now (barge-in, or an agent answering).
    pub(super) fn stop_playback(&mut self, id: SessionId) {
        self.bump_play_generation(id);
        self.media(MediaCommand::StopPlayback { leg: leg_of(id) });
    }

    pub(super) fn bump_play_generation(&mut self, id: SessionId) -> u64 {
        match self.calls.get_mut(&id) {
            Some(call) => {
                call.play_generation += 1;
                call.play_generation
            }
            None => 0,
        }
    }

    /// A flow timer fired: stale generations (restarted or cancelled timers) are dropped.
    pub(super) fn flow_timer(&mut self, now: Instant, id: SessionId, timer: u32, generation: u64) {
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
