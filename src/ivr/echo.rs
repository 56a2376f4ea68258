//! The built-in test flow: welcome prompt, then each key is echoed by saying its name; `#` says
//! goodbye and hangs up. A key always cuts the prompt that is playing (type-ahead).

use super::{digit_prompt, FlowAction};

#[derive(Debug, Default)]
pub struct EchoFlow {
    leaving: bool,
}

impl EchoFlow {
    pub fn start(&mut self) -> Vec<FlowAction> {
        vec![FlowAction::Play(vec!["welcome".to_owned()])]
    }

    pub fn on_digit(&mut self, digit: char) -> Vec<FlowAction> {
        if self.leaving {
            return vec![];
        }
        if digit == '#' {
            self.leaving = true;
            return vec![
                FlowAction::StopPlayback,
                FlowAction::Play(vec!["goodbye".to_owned()]),
            ];
        }
        match digit_prompt(digit) {
            Some(prompt) => vec![FlowAction::StopPlayback, FlowAction::Play(vec![prompt])],
            None => vec![FlowAction::StopPlayback],
        }
    }

    pub fn on_playback_finished(&mut self) -> Vec<FlowAction> {
        if self.leaving {
            vec![FlowAction::HangUp]
        } else {
            vec![]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn welcome_then_echo_then_goodbye_and_hang_up() {
        let mut flow = EchoFlow::default();
        assert_eq!(flow.start(), vec![FlowAction::Play(vec!["welcome".into()])]);
        assert_eq!(flow.on_playback_finished(), vec![]);
        assert_eq!(
            flow.on_digit('7'),
            vec![
                FlowAction::StopPlayback,
                FlowAction::Play(vec!["digit_7".into()])
            ]
        );
        assert_eq!(
            flow.on_digit('*'),
            vec![
                FlowAction::StopPlayback,
                FlowAction::Play(vec!["digit_star".into()])
            ]
        );
        assert_eq!(
            flow.on_digit('#'),
            vec![
                FlowAction::StopPlayback,
                FlowAction::Play(vec!["goodbye".into()])
            ]
        );
        assert_eq!(flow.on_digit('1'), vec![], "keys after # are ignored");
        assert_eq!(flow.on_playback_finished(), vec![FlowAction::HangUp]);
    }
}
