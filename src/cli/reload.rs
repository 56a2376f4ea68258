//! `hotline reload`: asks the running service to re-read routing.toml through its HTTP API
//! (`POST /api/reload`) and reports the service's answer: the new version's hash, or every
//! problem that made it refuse the file (the running version then stays).
//!
//! The service writes the address its HTTP API really bound next to its pid file
//! ([`address_file`]), so a port chosen by the system (`http.listen = "…:0"`) is found too;
//! without that file the `http.listen` setting is used.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Context};
use serde_json::Value;

use super::history;

/// Longer than the service's own wait for its loop (`http::api::RELOAD_TIMEOUT`), so the
/// service's 504 arrives before we give up.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(40);
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where `serve` writes the address its HTTP API listens on: next to the pid file.
pub fn address_file(pid_file: &Path) -> PathBuf {
    pid_file.with_extension("http")
}

pub struct Options<'a> {
    pub pid_file: &'a Path,
    /// The `http.listen` setting, used when the service wrote no address file.
    pub listen: SocketAddr,
    pub token: Option<&'a str>,
}

/// What the service answered.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// The new version is active for new calls.
    Applied { hash: String },
    /// The file was refused; the running version stays.
    Refused { problems: Vec<String> },
}

/// `hotline reload --rollback`: puts the version applied before the current one (from the
/// service's history, see `cli::history`) back in the routing file, keeping the file it
/// replaces as `<file>.before-rollback`, and asks the service to apply it. Returns the version
/// restored and the service's answer.
pub fn rollback(options: &Options, routing: &Path) -> anyhow::Result<(history::Version, Answer)> {
    let folder = history::folder(options.pid_file);
    let versions = history::list(&folder)
        .with_context(|| format!("reading the routing history {}", folder.display()))?;
    let [.., previous, _current] = versions.as_slice() else {
        return Err(anyhow!(
            "no earlier applied routing version in {} (the service keeps the versions it \
             applies there)",
            folder.display()
        ));
    };
    let content = std::fs::read(&previous.path)
        .with_context(|| format!("reading {}", previous.path.display()))?;
    if routing.exists() {
        let mut kept = routing.as_os_str().to_owned();
        kept.push(".before-rollback");
        std::fs::copy(routing, &kept)
            .with_context(|| format!("keeping {} before the rollback", routing.display()))?;
    }
    // Replaced in one step, so the service's file watcher never reads half of it.
    let mut temporary = routing.as_os_str().to_owned();
    temporary.push(".rollback");
    std::fs::write(&temporary, &content)
        .and_then(|()| std::fs::rename(&temporary, routing))
        .with_context(|| format!("writing {}", routing.display()))?;
    Ok((previous.clone(), run(options)?))
}

/// Asks the service; an error means no answer about the file (unreachable, wrong token, ...).
pub fn run(options: &Options) -> anyhow::Result<Answer> {
    let addr = service_address(options)?;
    let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map_err(|error| {
        anyhow!(
            "cannot reach the running service's HTTP API at {addr} ({error}); is `hotline serve` \
             running with these settings (http.listen, pid_file)?"
        )
    })?;
    let (status, body) = post(
        stream,
        addr,
        options.token,
        "/api/reload",
        "",
        ANSWER_TIMEOUT,
    )
    .with_context(|| format!("asking the service at {addr} to reload"))?;
    answer(status, &body).map_err(|message| anyhow!("the service at {addr}: {message}"))
}

/// The address the service wrote at start, else `http.listen` (a wildcard address means
/// this machine's loopback).
pub(super) fn service_address(options: &Options) -> anyhow::Result<SocketAddr> {
    let file = address_file(options.pid_file);
    let addr = match std::fs::read_to_string(&file) {
        Ok(text) => text
            .trim()
            .parse::<SocketAddr>()
            .with_context(|| format!("{} does not hold an address: {:?}", file.display(), text))?,
        Err(_) => options.listen,
    };
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Ok(SocketAddr::new(ip, addr.port()))
}

/// POSTs `body` (JSON, or nothing) to the service's API and returns the status and body.
pub(super) fn post(
    mut stream: TcpStream,
    addr: SocketAddr,
    token: Option<&str>,
    path: &str,
    body: &str,
    answer_timeout: Duration,
) -> anyhow::Result<(u16, String)> {
    stream
        .set_read_timeout(Some(answer_timeout))
        .context("setting the read timeout")?;
    let authorization = token
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    // HTTP/1.0: the service closes the connection after the answer, so reading to the end
    // is the whole body (no chunked encoding).
    let content_type = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/json\r\n"
    };
    write!(
        stream,
        "POST {path} HTTP/1.0\r\nHost: {addr}\r\n{authorization}{content_type}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .context("sending the request")?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .context("reading the answer")?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("the answer has no end of headers"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| anyhow!("the answer has no status: {head:?}"))?;
    Ok((status, body.to_owned()))
}

/// Reads the API's answer (see `http::api::reload`).
pub fn answer(status: u16, body: &str) -> Result<Answer, String> {
    let json = || serde_json::from_str::<Value>(body).map_err(|error| format!("{error}: {body}"));
    match status {
        200 => {
            let value = json()?;
            let hash = value["hash"]
                .as_str()
                .ok_or_else(|| format!("200 without a hash: {body}"))?;
            Ok(Answer::Applied {
                hash: hash.to_owned(),
            })
        }
        422 => {
            let value = json()?;
            let problems = value["problems"]
                .as_array()
                .ok_or_else(|| format!("422 without problems: {body}"))?
                .iter()
                .map(|problem| problem.as_str().unwrap_or_default().to_owned())
                .collect();
            Ok(Answer::Refused { problems })
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
            answer(200, r#"{"hash":"abc"}"#),
            Ok(Answer::Applied { hash: "abc".into() })
        );
        assert_eq!(
            answer(422, r#"{"problems":["a.toml:1: x: y","a.toml:2: z: w"]}"#),
            Ok(Answer::Refused {
                problems: vec!["a.toml:1: x: y".into(), "a.toml:2: z: w".into()]
            })
        );
        assert!(answer(401, "").unwrap_err().contains("http.token"));
        assert!(answer(504, "no answer from the service loop\n")
            .unwrap_err()
            .contains("504: no answer"));
        assert!(answer(200, "not json").is_err());
    }

    #[test]
    fn the_address_file_wins_and_wildcards_mean_loopback() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("hotline.pid");
        let options = Options {
            pid_file: &pid_file,
            listen: "0.0.0.0:8080".parse().unwrap(),
            token: None,
        };
        assert_eq!(
            service_address(&options).unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        std::fs::write(address_file(&pid_file), "127.0.0.1:41234\n").unwrap();
        assert_eq!(
            service_address(&options).unwrap(),
            "127.0.0.1:41234".parse().unwrap()
        );
    }
}
