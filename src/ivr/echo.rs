//! The built-in test flow: welcome prompt, then each key is echoed by saying its name; `#` says
//! goodbye and hangs up. A key always cuts the prompt that is playing (type-ahead).

use super::{digit_prompt, CallFlow, FlowAction, FlowClock, FlowEvent, PromptRef};

#[derive(Debug)]
pub struct EchoFlow {
    lang: String,
    leaving: bool,
}

impl EchoFlow {
    pub fn new(lang: &str) -> Self {
        Self {
            lang: lang.to_owned(),
            leaving: false,
        }
    }

    fn play(&self, name: &str) -> FlowAction {
        FlowAction::Play(vec![PromptRef::new(&self.lang, name)])
    }
}

impl CallFlow for EchoFlow {
    fn handle(&mut self, _clock: FlowClock, event: FlowEvent) -> Vec<FlowAction> {
        match event {
            FlowEvent::Started => vec![self.play("welcome")],
            FlowEvent::Digit(_) if self.leaving => vec![],
            FlowEvent::Digit('#') => {
                self.leaving = true;
                vec![FlowAction::StopPlayback, self.play("goodbye")]
            }
            FlowEvent::Digit(digit) => match digit_prompt(digit) {
                Some(prompt) => vec![FlowAction::StopPlayback, self.play(prompt)],
                None => vec![FlowAction::StopPlayback],
            },
            FlowEvent::PlaybackFinished if self.leaving => vec![FlowAction::HangUp],
            FlowEvent::PlaybackFinished
            | FlowEvent::Timer(_)
            | FlowEvent::TransferFailed(_)
            | FlowEvent::QueuePosition { .. }
            | FlowEvent::QueueGaveUp
            | FlowEvent::MovedToGroup { .. } => vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Instant, SystemTime};

    use super::*;

    #[test]
    fn welcome_then_echo_then_goodbye_and_hang_up() {
        let clock = FlowClock {
            now: Instant::now(),
            wall: SystemTime::now(),
        };
        let mut flow = EchoFlow::new("en");
        let play = |name: &str| FlowAction::Play(vec![PromptRef::new("en", name)]);
        assert_eq!(
            flow.handle(clock, FlowEvent::Started),
            vec![play("welcome")]
        );
        assert_eq!(flow.handle(clock, FlowEvent::PlaybackFinished), vec![]);
        assert_eq!(
            flow.handle(clock, FlowEvent::Digit('7')),
            vec![FlowAction::StopPlayback, play("digit_7")]
        );
        assert_eq!(
            flow.handle(clock, FlowEvent::Digit('*')),
            vec![FlowAction::StopPlayback, play("digit_star")]
        );
        assert_eq!(
            flow.handle(clock, FlowEvent::Digit('#')),
            vec![FlowAction::StopPlayback, play("goodbye")]
        );
        assert_eq!(
            flow.handle(clock, FlowEvent::Digit('1')),
            vec![],
            "keys after # are ignored"
        );
        assert_eq!(
            flow.handle(clock, FlowEvent::PlaybackFinished),
            vec![FlowAction::HangUp]
        );
    }
}
