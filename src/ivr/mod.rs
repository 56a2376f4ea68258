//! What callers hear and where they go. Until the routing-driven menus exist, the built-in
//! echo flow (`echo`) exercises prompts, barge-in and every DTMF path end to end.

pub mod echo;

/// What a call flow asks of the call: prompts by name, in the call's language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowAction {
    /// Queue these prompts after whatever plays.
    Play(Vec<String>),
    /// Cut the prompt that plays now (barge-in) and drop the queue.
    StopPlayback,
    HangUp,
}

/// The prompt that says a DTMF key's name.
pub fn digit_prompt(digit: char) -> Option<String> {
    match digit {
        '0'..='9' => Some(format!("digit_{digit}")),
        '*' => Some("digit_star".to_owned()),
        '#' => Some("digit_pound".to_owned()),
        _ => None,
    }
}
