//! `hotline call --trunk NAME NUMBER`: asks the running service (`POST /api/trunks/NAME/calls`) to call a
//! number through a carrier trunk and play a prompt, then reports how the call went: the way
//! to test a trunk's outbound side end to end.

use std::net::TcpStream;
use std::time::Duration;

use anyhow::{anyhow, Context};
use serde_json::{json, Value};

use super::reload::{post, service_address, Options, CONNECT_TIMEOUT};

/// Longer than the service's own limit (`http::api::PLACED_CALL_TIMEOUT`).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(200);

/// What to place.
pub struct Order<'a> {
    pub trunk: &'a str,
    pub number: &'a str,
    pub language: &'a str,
    pub prompt: &'a str,
}

/// How it went, as the service reported it.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Answered {
        answered_after_ms: u64,
        talked_ms: u64,
    },
    Failed {
        status: u16,
        reason: String,
    },
}

pub fn run(options: &Options, order: &Order) -> anyhow::Result<Outcome> {
    let addr = service_address(options)?;
    let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map_err(|error| {
        anyhow!("cannot reach the running service's HTTP API at {addr} ({error}); is `hotline serve` running?")
    })?;
    let body = json!({
        "number": order.number,
        "language": order.language,
        "prompt": order.prompt,
    })
    .to_string();
    let path = format!("/api/trunks/{}/calls", order.trunk);
    let (status, body) = post(stream, addr, options.token, &path, &body, ANSWER_TIMEOUT)
        .with_context(|| format!("asking the service at {addr} to place the call"))?;
    answer(status, &body).map_err(|message| anyhow!("the service at {addr}: {message}"))
}

/// Reads the API's answer (see `http::api::place_call`).
pub fn answer(status: u16, body: &str) -> Result<Outcome, String> {
    let value = || serde_json::from_str::<Value>(body).map_err(|error| format!("{error}: {body}"));
    match status {
        200 => {
            let value = value()?;
            Ok(Outcome::Answered {
                answered_after_ms: value["answered_after_ms"].as_u64().unwrap_or_default(),
                talked_ms: value["talked_ms"].as_u64().unwrap_or_default(),
            })
        }
        502 => {
            let value = value()?;
            Ok(Outcome::Failed {
                status: value["status"]
                    .as_u64()
                    .and_then(|s| u16::try_from(s).ok())
                    .unwrap_or(500),
                reason: value["reason"].as_str().unwrap_or_default().to_owned(),
            })
        }
        401 => Err("401: the token was refused (setting http.token)".to_owned()),
        other => Err(format!("{other}: {}", body.trim())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read() {
        assert_eq!(
            answer(200, r#"{"answered_after_ms":120,"talked_ms":3100}"#),
            Ok(Outcome::Answered {
                answered_after_ms: 120,
                talked_ms: 3100
            })
        );
        assert_eq!(
            answer(502, r#"{"status":486,"reason":"busy"}"#),
            Ok(Outcome::Failed {
                status: 486,
                reason: "busy".into()
            })
        );
        assert!(answer(404, "no trunk\n").unwrap_err().contains("404"));
    }
}
