//! Outbound registration of one trunk with its carrier (RFC 3261 §10.2) as a sans-I/O machine:
//! digest challenges, refresh before expiry, 423, slow retries after a refusal, backoff with
//! jitter after outages, failover to the backup host and back, Contact corrected from Via
//! `received`/`rport`, and unregistration on stop.
//!
//! Driving it (the caller owns sockets, DNS and the transaction layer):
//! - [`Registration::handle_input`] with [`RegInput::Start`] / [`RegInput::Stop`], each final
//!   (or provisional) [`RegInput::Response`] to a request it asked for, and
//!   [`RegInput::Timeout`] when that request's transaction timed out or could not be sent
//!   (host unresolvable, connection refused);
//! - [`Registration::handle_timeout`] at [`Registration::poll_timeout`];
//! - after either, drain [`Registration::poll_output`]: [`RegOutput::Send`] is a complete
//!   REGISTER (fresh Via branch, CSeq) for a client transaction to the named host;
//!   [`RegOutput::StateChanged`] is the moment for one log line and the metrics.
//!
//! Responses are matched by Call-ID and CSeq, so a late answer to a superseded request is
//! ignored. Time comes in as `now`; randomness (branches, tags, cnonces, jitter) from a seed.
//! Trunks that do not register are watched by [`keepalive::Keepalive`] (OPTIONS) instead.

pub(crate) mod auth;
pub mod keepalive;
mod wire;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::message;
use super::transport::TransportKind;
use crate::settings::{Secret, TrunkSettings};

/// After an outage the first retry comes within this; each further failure doubles it.
const FIRST_BACKOFF: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(600);
/// After a refusal (wrong password, 403) the carrier is asked again this rarely (a few per hour).
const REFUSED_RETRY_MIN: Duration = Duration::from_secs(12 * 60);
const REFUSED_RETRY_MAX: Duration = Duration::from_secs(15 * 60);
/// `stale=true` answers accepted in a row before the registrar is deemed broken.
const MAX_STALE_IN_A_ROW: u32 = 3;

/// What a registration is set up with (from `[trunks.NAME]` and the bound address).
#[derive(Debug, Clone)]
pub struct RegistrationConfig {
    /// The trunk's name, for the log and the visibility snapshot.
    pub trunk: String,
    /// `host[:port]` of the registrar (R-URI and the address-of-record's domain).
    pub host: String,
    pub backup_host: Option<String>,
    pub transport: TransportKind,
    pub username: String,
    /// Digest user name (usually `username`).
    pub auth_username: String,
    pub password: Secret,
    /// Registration lifetime asked for.
    pub expires: Duration,
    /// Our address for Via and Contact until the carrier says where it sees us.
    pub contact_addr: SocketAddr,
    /// A request without a final response or [`RegInput::Timeout`] this long is given up
    /// (should not be shorter than the transaction layer's 64·T1).
    pub request_timeout: Duration,
}

impl RegistrationConfig {
    /// The configuration of `[trunks.NAME]` (which must have `register = true`): reads
    /// `password_file` if that is where the password is.
    pub fn from_settings(
        name: &str,
        trunk: &TrunkSettings,
        contact_addr: SocketAddr,
        request_timeout: Duration,
    ) -> Result<Self, String> {
        let username = trunk
            .username
            .clone()
            .ok_or_else(|| format!("trunks.{name}.username is required to register"))?;
        let password = trunk
            .resolve_password()
            .map_err(|error| format!("trunks.{name}.password_file: {error}"))?
            .ok_or_else(|| format!("trunks.{name}.password is required to register"))?;
        Ok(Self {
            trunk: name.to_owned(),
            host: trunk.host.clone(),
            backup_host: trunk.backup_host.clone(),
            transport: trunk.transport.into(),
            auth_username: trunk.auth_user().unwrap_or(&username).to_owned(),
            username,
            password,
            expires: trunk.expires,
            contact_addr,
            request_timeout,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    Primary,
    Backup,
}

#[derive(Debug, Clone)]
pub enum RegInput {
    Start,
    /// A response to a REGISTER this machine asked to send.
    Response(rsip::Response),
    /// That REGISTER's transaction timed out or it could not be sent.
    Timeout,
    /// Graceful stop: unregister (Expires: 0) if registered, then [`RegState::Stopped`].
    Stop,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegOutput {
    /// Send `request` to `host` (`server`'s `host[:port]`) in a new client transaction.
    Send {
        server: Server,
        host: String,
        request: rsip::Request,
    },
    StateChanged(RegStatus),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegState {
    /// Not started yet.
    Idle,
    /// First registration (or one after the binding lapsed) in progress.
    Registering,
    /// A binding is valid (a refresh may be in flight).
    Registered,
    /// Outage (timeouts, 5xx): retried with backoff.
    Retrying,
    /// The carrier refuses us (wrong credentials, 403, other 4xx/6xx): retried slowly.
    Refused,
    Unregistering,
    Stopped,
}

/// The visibility snapshot: state, where, why not, and when next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegStatus {
    pub trunk: String,
    pub state: RegState,
    /// The server registered with, or being tried.
    pub server: Server,
    pub registered_until: Option<Instant>,
    pub last_error: Option<String>,
    pub next_retry: Option<Instant>,
    /// The Contact address registered (learned from Via `received`/`rport`).
    pub contact_addr: SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuthUse {
    None,
    /// Credentials computed from an earlier challenge (the nonce may have expired).
    Cached,
    /// Credentials answering the challenge just received: another challenge means refusal.
    Fresh,
}

#[derive(Debug)]
struct Pending {
    cseq: u32,
    server: Server,
    unregister: bool,
    auth: AuthUse,
    deadline: Instant,
}

#[derive(Debug)]
pub struct Registration {
    config: RegistrationConfig,
    rng: StdRng,
    call_id: String,
    from_tag: String,
    cseq: u32,
    state: RegState,
    server: Server,
    contact_addr: SocketAddr,
    /// A Contact the carrier may still hold after our address changed: removed next time.
    stale_contact: Option<SocketAddr>,
    expires: u32,
    challenge: Option<auth::Challenge>,
    fresh_challenge: bool,
    stale_in_a_row: u32,
    pending: Option<Pending>,
    bound: Option<(Server, Instant)>,
    last_error: Option<String>,
    next_at: Option<Instant>,
    /// Consecutive failed rounds (a round tries the primary, then the backup).
    failures: u32,
    tried_other: bool,
    outputs: VecDeque<RegOutput>,
    reported: Option<RegStatus>,
    counts: RegCounts,
}

/// Final responses and timeouts so far, by outcome (`hotline_trunk_registrations_total`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegCounts {
    /// 2xx.
    pub ok: u64,
    /// 401/407 answered with credentials (not counted as failures).
    pub challenged: u64,
    /// Refusals: credentials refused, 403, other 4xx/6xx.
    pub refused: u64,
    /// Outages: timeouts, 408, 5xx.
    pub failed: u64,
}

impl Registration {
    pub fn new(config: RegistrationConfig, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let call_id = format!("{:024x}@hotline", rng.gen::<u128>() >> 32);
        let from_tag = format!("{:016x}", rng.gen::<u64>());
        let expires = u32::try_from(config.expires.as_secs().max(1)).unwrap_or(u32::MAX);
        Self {
            contact_addr: config.contact_addr,
            config,
            rng,
            call_id,
            from_tag,
            cseq: 0,
            state: RegState::Idle,
            server: Server::Primary,
            stale_contact: None,
            expires,
            challenge: None,
            fresh_challenge: false,
            stale_in_a_row: 0,
            pending: None,
            bound: None,
            last_error: None,
            next_at: None,
            failures: 0,
            tried_other: false,
            outputs: VecDeque::new(),
            reported: None,
            counts: RegCounts::default(),
        }
    }

    pub fn handle_input(&mut self, now: Instant, input: RegInput) {
        match input {
            RegInput::Start => {
                if matches!(self.state, RegState::Idle | RegState::Stopped) {
                    self.server = Server::Primary;
                    self.send(now, false);
                }
            }
            RegInput::Stop => self.stop(now),
            RegInput::Response(response) => self.on_response(now, response),
            RegInput::Timeout => {
                if let Some(pending) = self.pending.take() {
                    self.on_transient(now, &pending, "no answer (timeout)".to_owned(), None);
                }
            }
        }
        self.report();
    }

    /// Fires what is due: a request's deadline, the binding's end, a refresh or a retry.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.pending.as_ref().is_some_and(|p| now >= p.deadline) {
            if let Some(pending) = self.pending.take() {
                self.on_transient(now, &pending, "no answer (timeout)".to_owned(), None);
            }
        }
        if self.bound.is_some_and(|(_, until)| now >= until) {
            self.bound = None;
            if self.state == RegState::Registered {
                self.state = if self.pending.is_some() {
                    RegState::Registering
                } else {
                    RegState::Retrying
                };
            }
        }
        if self.next_at.is_some_and(|at| now >= at) && self.pending.is_none() {
            self.next_at = None;
            // Registered on the backup: each refresh tries the primary first.
            self.server = Server::Primary;
            self.send(now, false);
        }
        self.report();
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let deadline = self.pending.as_ref().map(|p| p.deadline);
        let bound = self.bound.map(|(_, until)| until);
        [deadline, bound, self.next_at].into_iter().flatten().min()
    }

    pub fn poll_output(&mut self) -> Option<RegOutput> {
        self.outputs.pop_front()
    }

    pub fn status(&self) -> RegStatus {
        RegStatus {
            trunk: self.config.trunk.clone(),
            state: self.state,
            server: self.bound.map_or(self.server, |(server, _)| server),
            registered_until: self.bound.map(|(_, until)| until),
            last_error: self.last_error.clone(),
            next_retry: self.next_at,
            contact_addr: self.contact_addr,
        }
    }

    pub fn counts(&self) -> RegCounts {
        self.counts
    }

    /// Registered and the binding still valid (`hotline_trunk_up`).
    pub fn is_up(&self, now: Instant) -> bool {
        self.bound.is_some_and(|(_, until)| now < until)
    }

    fn stop(&mut self, now: Instant) {
        let unregistering = self.pending.as_ref().is_some_and(|p| p.unregister);
        if unregistering || self.state == RegState::Stopped {
            return;
        }
        self.next_at = None;
        let bound = self.bound.filter(|(_, until)| now < *until);
        // A REGISTER in flight may yet make a binding: remove it too.
        let in_flight = self.pending.as_ref().map(|pending| pending.server);
        if let Some(server) = bound.map(|(server, _)| server).or(in_flight) {
            self.server = server;
            self.send(now, true);
        } else {
            self.pending = None;
            self.bound = None;
            self.state = RegState::Stopped;
        }
    }

    fn send(&mut self, now: Instant, unregister: bool) {
        self.cseq += 1;
        let host = match self.server {
            Server::Backup => self.config.backup_host.clone(),
            Server::Primary => None,
        }
        .unwrap_or_else(|| self.config.host.clone());
        let auth = match (&self.challenge, self.fresh_challenge) {
            (None, _) => AuthUse::None,
            (Some(_), true) => AuthUse::Fresh,
            (Some(_), false) => AuthUse::Cached,
        };
        self.fresh_challenge = false;
        let request = self.build(&host, unregister);
        self.pending = Some(Pending {
            cseq: self.cseq,
            server: self.server,
            unregister,
            auth,
            deadline: now + self.config.request_timeout,
        });
        self.state = if unregister {
            RegState::Unregistering
        } else if self.is_up(now) {
            RegState::Registered
        } else if matches!(self.state, RegState::Retrying | RegState::Refused) {
            self.state
        } else {
            RegState::Registering
        };
        self.outputs.push_back(RegOutput::Send {
            server: self.server,
            host,
            request,
        });
    }

    fn on_response(&mut self, now: Instant, response: rsip::Response) {
        let ours = self.pending.as_ref().is_some_and(|pending| {
            message::call_id(&response) == Some(self.call_id.as_str())
                && message::cseq(&response).map(|(number, _)| number) == Some(pending.cseq)
        });
        let status = response.status_code.code();
        if !ours || status < 200 {
            return;
        }
        let Some(pending) = self.pending.take() else {
            return;
        };
        // Only a binding made at the old address needs removing once we move.
        let registered_there = self.bound.is_some() || (200..300).contains(&status);
        let moved = self.learn_address(&response, registered_there);
        if pending.unregister {
            let challenged = matches!(status, 401 | 407) && pending.auth != AuthUse::Fresh;
            if challenged && self.take_challenge(&response, status == 407).is_ok() {
                return self.send(now, true);
            }
            self.bound = None;
            self.state = RegState::Stopped;
            return;
        }
        match status {
            200..=299 => self.on_registered(now, &pending, &response, moved),
            401 | 407 => self.on_challenge(now, &pending, &response, status == 407),
            423 => {
                let minimum = message::header_value(&response, "Min-Expires")
                    .and_then(|value| value.trim().parse::<u32>().ok());
                match minimum {
                    Some(minimum) if minimum > self.expires => {
                        self.expires = minimum;
                        self.send(now, false);
                    }
                    _ => self.refuse(now, "423 Interval Too Brief without a larger Min-Expires"),
                }
            }
            408 | 500..=599 => {
                let retry_after = message::header_value(&response, "Retry-After")
                    .and_then(|value| value.split(|c: char| !c.is_ascii_digit()).next())
                    .and_then(|digits| digits.parse::<u64>().ok())
                    .map(Duration::from_secs);
                self.on_transient(now, &pending, wire::status_text(&response), retry_after);
            }
            _ => self.refuse(now, &wire::status_text(&response)),
        }
    }

    fn on_registered(
        &mut self,
        now: Instant,
        pending: &Pending,
        response: &rsip::Response,
        moved: bool,
    ) {
        self.counts.ok += 1;
        let granted = self.granted_expires(response);
        self.stale_in_a_row = 0;
        if granted == 0 {
            return self.refuse(now, "200 OK without our Contact or with expires 0");
        }
        let granted = Duration::from_secs(u64::from(granted));
        self.bound = Some((pending.server, now + granted));
        self.server = pending.server;
        self.state = RegState::Registered;
        self.last_error = None;
        self.failures = 0;
        self.tried_other = false;
        if moved {
            // The carrier sees us elsewhere: register the corrected Contact at once.
            return self.send(now, false);
        }
        self.stale_contact = None;
        let margin = (granted / 10).clamp(Duration::from_secs(5), Duration::from_secs(60));
        self.next_at = Some(now + granted.saturating_sub(margin).max(granted / 2));
    }

    fn on_challenge(
        &mut self,
        now: Instant,
        pending: &Pending,
        response: &rsip::Response,
        proxy: bool,
    ) {
        let stale = match self.take_challenge(response, proxy) {
            Ok(stale) => stale,
            Err(problem) => {
                return self.refuse(now, &format!("{}: {problem}", wire::status_text(response)))
            }
        };
        if stale {
            self.stale_in_a_row += 1;
            if self.stale_in_a_row > MAX_STALE_IN_A_ROW {
                return self.refuse(now, "registrar keeps answering stale=true");
            }
        } else if pending.auth == AuthUse::Fresh {
            let realm = self.challenge.as_ref().map_or("", |c| c.realm()).to_owned();
            self.challenge = None;
            return self.refuse(
                now,
                &format!(
                    "{}: credentials refused for realm \"{realm}\" (wrong user name or password?)",
                    wire::status_text(response)
                ),
            );
        }
        self.counts.challenged += 1;
        self.send(now, false);
    }

    /// Keeps the response's challenge; `Ok(stale)`, or why it cannot be answered.
    fn take_challenge(&mut self, response: &rsip::Response, proxy: bool) -> Result<bool, String> {
        let name = if proxy {
            "Proxy-Authenticate"
        } else {
            "WWW-Authenticate"
        };
        let value = message::header_value(response, name).ok_or(format!("no {name}"))?;
        let parsed = auth::parse(value, proxy)?;
        self.challenge = Some(parsed.challenge);
        self.fresh_challenge = true;
        Ok(parsed.stale)
    }

    /// Outage: the other server at once if it has not failed this round, else backoff.
    fn on_transient(
        &mut self,
        now: Instant,
        pending: &Pending,
        reason: String,
        retry_after: Option<Duration>,
    ) {
        let server_name = match pending.server {
            Server::Primary => &self.config.host,
            Server::Backup => self
                .config
                .backup_host
                .as_ref()
                .unwrap_or(&self.config.host),
        };
        self.last_error = Some(format!("{server_name}: {reason}"));
        self.counts.failed += 1;
        if pending.unregister {
            self.bound = None;
            self.state = RegState::Stopped;
            return;
        }
        self.challenge = None;
        self.fresh_challenge = false;
        if self.config.backup_host.is_some() && !self.tried_other {
            self.tried_other = true;
            self.server = match pending.server {
                Server::Primary => Server::Backup,
                Server::Backup => Server::Primary,
            };
            return self.send(now, false);
        }
        self.tried_other = false;
        self.failures += 1;
        let ceiling = FIRST_BACKOFF
            .saturating_mul(1 << (self.failures - 1).min(16))
            .min(MAX_BACKOFF);
        let jittered = self.rng.gen_range(ceiling / 2..=ceiling);
        let delay = jittered.max(retry_after.unwrap_or_default().min(MAX_BACKOFF));
        self.server = Server::Primary;
        self.next_at = Some(now + delay);
        self.state = if self.is_up(now) {
            RegState::Registered
        } else {
            RegState::Retrying
        };
    }

    /// The carrier refuses us: down, with the reason, and asked again only rarely.
    fn refuse(&mut self, now: Instant, reason: &str) {
        self.counts.refused += 1;
        self.last_error = Some(reason.to_owned());
        self.challenge = None;
        self.fresh_challenge = false;
        self.bound = None;
        self.tried_other = false;
        self.server = Server::Primary;
        let delay = self.rng.gen_range(REFUSED_RETRY_MIN..=REFUSED_RETRY_MAX);
        self.next_at = Some(now + delay);
        self.state = RegState::Refused;
    }

    /// One `StateChanged` per change of state, server or error.
    fn report(&mut self) {
        let status = self.status();
        let changed = self.reported.as_ref().is_none_or(|last| {
            (last.state, last.server, &last.last_error, last.contact_addr)
                != (
                    status.state,
                    status.server,
                    &status.last_error,
                    status.contact_addr,
                )
        });
        if changed && status.state != RegState::Idle {
            self.reported = Some(status.clone());
            self.outputs.push_back(RegOutput::StateChanged(status));
        }
    }
}

#[cfg(test)]
mod tests;
