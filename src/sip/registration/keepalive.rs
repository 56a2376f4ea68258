//! OPTIONS keep-alive of a trunk that does not register: a probe every `options_interval`
//! tells whether the carrier answers (`hotline_trunk_up`) and which host calls should use
//! (the primary, else the backup). Sans-I/O, driven like [`super::Registration`]: feed
//! [`ProbeInput`]s and timeouts, send every [`ProbeOutput::Send`] in a client transaction.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rsip::headers::UntypedHeader;

use super::{wire, Server};
use crate::sip::message;
use crate::sip::transaction::new_branch;
use crate::sip::transport::TransportKind;

#[derive(Debug, Clone)]
pub struct KeepaliveConfig {
    pub trunk: String,
    pub host: String,
    pub backup_host: Option<String>,
    pub transport: TransportKind,
    /// Time between probe rounds (`options_interval`).
    pub interval: Duration,
    /// Our address for Via.
    pub local_addr: SocketAddr,
    /// A probe without a final response or [`ProbeInput::Timeout`] this long has failed.
    pub request_timeout: Duration,
}

impl KeepaliveConfig {
    /// The probe of `[trunks.NAME]` (`options_interval`, hosts, transport).
    pub fn from_settings(
        name: &str,
        trunk: &crate::settings::TrunkSettings,
        local_addr: SocketAddr,
        request_timeout: Duration,
    ) -> Self {
        Self {
            trunk: name.to_owned(),
            host: trunk.host.clone(),
            backup_host: trunk.backup_host.clone(),
            transport: trunk.transport.into(),
            interval: trunk.options_interval,
            local_addr,
            request_timeout,
        }
    }
}

#[derive(Debug, Clone)]
pub enum ProbeInput {
    Start,
    Response(rsip::Response),
    /// The probe's transaction timed out or it could not be sent.
    Timeout,
    Stop,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutput {
    Send {
        server: Server,
        host: String,
        request: rsip::Request,
    },
    StateChanged(ProbeStatus),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeStatus {
    pub trunk: String,
    /// The last round got an answer from `server`.
    pub up: bool,
    pub server: Server,
    pub last_error: Option<String>,
    pub next_probe: Option<Instant>,
}

#[derive(Debug)]
struct InFlight {
    call_id: String,
    server: Server,
    deadline: Instant,
}

#[derive(Debug)]
pub struct Keepalive {
    config: KeepaliveConfig,
    rng: StdRng,
    running: bool,
    up: bool,
    server: Server,
    last_error: Option<String>,
    in_flight: Option<InFlight>,
    next_at: Option<Instant>,
    outputs: VecDeque<ProbeOutput>,
    reported: Option<(bool, Server, Option<String>)>,
}

impl Keepalive {
    pub fn new(config: KeepaliveConfig, seed: u64) -> Self {
        Self {
            config,
            rng: StdRng::seed_from_u64(seed),
            running: false,
            up: false,
            server: Server::Primary,
            last_error: None,
            in_flight: None,
            next_at: None,
            outputs: VecDeque::new(),
            reported: None,
        }
    }

    pub fn handle_input(&mut self, now: Instant, input: ProbeInput) {
        match input {
            ProbeInput::Start if !self.running => {
                self.running = true;
                self.probe(now, Server::Primary);
            }
            ProbeInput::Start => {}
            ProbeInput::Stop => {
                self.running = false;
                self.up = false;
                self.in_flight = None;
                self.next_at = None;
            }
            ProbeInput::Response(response) => self.on_response(now, &response),
            ProbeInput::Timeout => {
                if let Some(in_flight) = self.in_flight.take() {
                    self.on_failure(now, in_flight.server, "no answer (timeout)".to_owned());
                }
            }
        }
        self.report();
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.in_flight.as_ref().is_some_and(|p| now >= p.deadline) {
            if let Some(in_flight) = self.in_flight.take() {
                self.on_failure(now, in_flight.server, "no answer (timeout)".to_owned());
            }
        }
        if self.running && self.in_flight.is_none() && self.next_at.is_some_and(|at| now >= at) {
            self.probe(now, Server::Primary);
        }
        self.report();
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let deadline = self.in_flight.as_ref().map(|p| p.deadline);
        [deadline, self.next_at].into_iter().flatten().min()
    }

    pub fn poll_output(&mut self) -> Option<ProbeOutput> {
        self.outputs.pop_front()
    }

    /// Whether the carrier answered the last round (`hotline_trunk_up`).
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Where calls should go: the host that answered last.
    pub fn active_server(&self) -> Server {
        self.server
    }

    pub fn status(&self) -> ProbeStatus {
        ProbeStatus {
            trunk: self.config.trunk.clone(),
            up: self.up,
            server: self.server,
            last_error: self.last_error.clone(),
            next_probe: self.next_at,
        }
    }

    fn on_response(&mut self, now: Instant, response: &rsip::Response) {
        let ours = self
            .in_flight
            .as_ref()
            .is_some_and(|p| message::call_id(response) == Some(p.call_id.as_str()));
        let status = response.status_code.code();
        if !ours || status < 200 {
            return;
        }
        let Some(in_flight) = self.in_flight.take() else {
            return;
        };
        // Any answer but an overload or server error shows a live carrier (404/405 included).
        if status == 408 || status >= 500 {
            return self.on_failure(now, in_flight.server, wire::status_text(response));
        }
        self.up = true;
        self.server = in_flight.server;
        self.last_error = None;
        self.next_at = Some(now + self.config.interval);
    }

    /// The primary failed: the backup at once; both failed: down until the next round.
    fn on_failure(&mut self, now: Instant, server: Server, reason: String) {
        let name = self.host(server);
        self.last_error = Some(format!("{name}: {reason}"));
        if !self.running {
            return;
        }
        if server == Server::Primary && self.config.backup_host.is_some() {
            return self.probe(now, Server::Backup);
        }
        self.up = false;
        self.next_at = Some(now + self.config.interval);
    }

    fn host(&self, server: Server) -> String {
        match server {
            Server::Backup => self.config.backup_host.clone(),
            Server::Primary => None,
        }
        .unwrap_or_else(|| self.config.host.clone())
    }

    fn probe(&mut self, now: Instant, server: Server) {
        self.next_at = None;
        let host = self.host(server);
        let call_id = format!("{:024x}@hotline", self.rng.gen::<u128>() >> 32);
        let uri = format!("sip:{host}{}", self.config.transport.uri_param());
        let branch = new_branch(&mut self.rng);
        let tag = format!("{:016x}", self.rng.gen::<u64>());
        let mut headers = rsip::Headers::default();
        let via = format!(
            "SIP/2.0/{} {};branch={branch};rport",
            self.config.transport.via_name(),
            self.config.local_addr
        );
        headers.push(rsip::headers::Via::new(via).into());
        headers.push(rsip::headers::MaxForwards::new("70").into());
        headers.push(
            rsip::headers::From::new(format!(
                "<sip:hotline@{}>;tag={tag}",
                self.config.local_addr
            ))
            .into(),
        );
        headers.push(rsip::headers::To::new(format!("<{uri}>")).into());
        headers.push(rsip::headers::CallId::new(call_id.clone()).into());
        headers.push(rsip::headers::CSeq::new("1 OPTIONS").into());
        headers.push(rsip::headers::Accept::new("application/sdp").into());
        headers.push(rsip::headers::UserAgent::new("hotline").into());
        headers.push(rsip::headers::ContentLength::default().into());
        let request = rsip::Request {
            method: rsip::Method::Options,
            uri: rsip::Uri::try_from(uri.as_str()).unwrap_or_default(),
            version: rsip::Version::V2,
            headers,
            body: Vec::new(),
        };
        self.in_flight = Some(InFlight {
            call_id,
            server,
            deadline: now + self.config.request_timeout,
        });
        self.outputs.push_back(ProbeOutput::Send {
            server,
            host,
            request,
        });
    }

    fn report(&mut self) {
        let now = (self.up, self.server, self.last_error.clone());
        if self.reported.as_ref() != Some(&now) && (self.up || self.last_error.is_some()) {
            self.reported = Some(now);
            self.outputs
                .push_back(ProbeOutput::StateChanged(self.status()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(backup: bool) -> KeepaliveConfig {
        KeepaliveConfig {
            trunk: "carrier".into(),
            host: "carrier.example:5060".into(),
            backup_host: backup.then(|| "backup.example".into()),
            transport: TransportKind::Udp,
            interval: Duration::from_secs(30),
            local_addr: "10.0.0.5:5060".parse().unwrap(),
            request_timeout: Duration::from_secs(32),
        }
    }

    fn sent(keepalive: &mut Keepalive) -> Vec<(Server, rsip::Request)> {
        let mut requests = Vec::new();
        while let Some(output) = keepalive.poll_output() {
            if let ProbeOutput::Send {
                server, request, ..
            } = output
            {
                requests.push((server, request));
            }
        }
        requests
    }

    fn answer(request: &rsip::Request, status: u16) -> rsip::Response {
        message::response_for(request, message::status(status), Some("x"))
    }

    #[test]
    fn answered_probes_keep_the_trunk_up_every_interval() {
        let t0 = Instant::now();
        let mut keepalive = Keepalive::new(config(false), 1);
        keepalive.handle_input(t0, ProbeInput::Start);
        let probes = sent(&mut keepalive);
        assert_eq!(probes.len(), 1);
        let (server, request) = &probes[0];
        assert_eq!(*server, Server::Primary);
        assert_eq!(request.method, rsip::Method::Options);
        assert!(!keepalive.is_up(), "not up before an answer");
        // A carrier that does not implement OPTIONS still shows it is alive.
        keepalive.handle_input(t0, ProbeInput::Response(answer(request, 405)));
        assert!(keepalive.is_up());
        assert_eq!(keepalive.poll_timeout(), Some(t0 + Duration::from_secs(30)));
        keepalive.handle_timeout(t0 + Duration::from_secs(30));
        assert_eq!(sent(&mut keepalive).len(), 1);
    }

    #[test]
    fn an_unanswered_primary_fails_over_to_the_backup_and_back() {
        let t0 = Instant::now();
        let mut keepalive = Keepalive::new(config(true), 2);
        keepalive.handle_input(t0, ProbeInput::Start);
        sent(&mut keepalive);
        let t1 = t0 + Duration::from_secs(32);
        keepalive.handle_input(t1, ProbeInput::Timeout);
        let probes = sent(&mut keepalive);
        let (server, request) = &probes[0];
        assert_eq!(*server, Server::Backup);
        keepalive.handle_input(t1, ProbeInput::Response(answer(request, 200)));
        assert!(keepalive.is_up());
        assert_eq!(keepalive.active_server(), Server::Backup);

        keepalive.handle_timeout(keepalive.poll_timeout().unwrap());
        let probes = sent(&mut keepalive);
        let (server, request) = &probes[0];
        assert_eq!(*server, Server::Primary, "each round starts at the primary");
        keepalive.handle_input(t1, ProbeInput::Response(answer(request, 200)));
        assert_eq!(keepalive.active_server(), Server::Primary);
    }

    #[test]
    fn both_hosts_failing_is_down_with_the_reason() {
        let t0 = Instant::now();
        let mut keepalive = Keepalive::new(config(true), 3);
        keepalive.handle_input(t0, ProbeInput::Start);
        let (_, request) = sent(&mut keepalive).remove(0);
        keepalive.handle_input(t0, ProbeInput::Response(answer(&request, 503)));
        let (_, request) = sent(&mut keepalive).remove(0);
        // Its deadline passes without an answer.
        keepalive.handle_timeout(t0 + Duration::from_secs(32));
        assert!(!keepalive.is_up());
        let status = keepalive.status();
        assert_eq!(
            status.last_error.as_deref(),
            Some("backup.example: no answer (timeout)")
        );
        assert_eq!(status.next_probe, Some(t0 + Duration::from_secs(62)));
        // A late answer to the abandoned probe changes nothing.
        keepalive.handle_input(t0, ProbeInput::Response(answer(&request, 200)));
        assert!(!keepalive.is_up());
        keepalive.handle_input(t0, ProbeInput::Stop);
        assert_eq!(keepalive.poll_timeout(), None);
    }
}
