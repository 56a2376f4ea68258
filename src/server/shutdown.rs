//! The graceful stop's phases after SIGTERM or SIGINT: draining (new calls refused with 503,
//! calls in progress go on for `shutdown.grace`), then hanging up what is left (BYE, CANCEL)
//! with a bounded wait for those calls to end. A second signal cuts the grace short. The
//! driver then closes the call-record writer and exits.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::call::{Input, Switchboard};

/// Past Timer F (64·T1), which ends every unanswered BYE, so only a bug outlasts this margin.
const HANG_UP_MARGIN: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// New calls are refused; calls in progress may go on until `until`.
    Draining {
        until: Instant,
    },
    /// Every call was sent BYE (or CANCEL to ringing agents); they end by `until`.
    HangingUp {
        until: Instant,
    },
    /// Nothing left to wait for: the driver may exit.
    Done,
}

pub(super) struct Shutdown {
    grace: Duration,
    hang_up_wait: Duration,
    phase: Phase,
}

impl Shutdown {
    /// `t1` bounds the wait after hanging up (a BYE transaction ends within 64·T1).
    pub(super) fn new(grace: Duration, t1: Duration) -> Self {
        Shutdown {
            grace,
            hang_up_wait: t1 * 64 + HANG_UP_MARGIN,
            phase: Phase::Running,
        }
    }

    /// A SIGTERM or SIGINT: the first starts the drain, the second hangs up at once.
    pub(super) fn signal(&mut self, signal: &str, switchboard: &mut Switchboard, now: Instant) {
        match self.phase {
            Phase::Running => {
                let stats = switchboard.stats();
                info!(
                    signal,
                    grace = ?self.grace,
                    calls = stats.calls,
                    agent_legs = stats.agent_legs,
                    "stopping: new calls get 503; calls in progress may go on for the grace"
                );
                switchboard.handle_input(now, Input::Drain);
                self.phase = Phase::Draining {
                    until: now + self.grace,
                };
            }
            Phase::Draining { .. } => {
                info!(
                    signal,
                    "second signal: not waiting for the rest of the grace"
                );
                self.hang_up(switchboard, now);
            }
            Phase::HangingUp { .. } | Phase::Done => {
                info!(
                    signal,
                    "already hanging up every call; waiting for them to end"
                );
            }
        }
    }

    /// When the current phase's time runs out (none while running).
    pub(super) fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Draining { until } | Phase::HangingUp { until } => Some(until),
            Phase::Running | Phase::Done => None,
        }
    }

    /// The phase's time ran out: the grace ends in hanging up; the hang-up wait in giving up.
    pub(super) fn expired(&mut self, switchboard: &mut Switchboard, now: Instant) {
        match self.phase {
            Phase::Draining { until } if now >= until => {
                info!(grace = ?self.grace, "grace over");
                self.hang_up(switchboard, now);
            }
            Phase::HangingUp { until } if now >= until => {
                let stats = switchboard.stats();
                warn!(
                    calls = stats.calls,
                    agent_legs = stats.agent_legs,
                    wait = ?self.hang_up_wait,
                    "calls still not ended after hanging up: exiting without their records"
                );
                self.phase = Phase::Done;
            }
            _ => {}
        }
    }

    /// True once the service may exit: stopping, and no call or agent leg is left.
    pub(super) fn finished(&mut self, switchboard: &Switchboard) -> bool {
        match self.phase {
            Phase::Running => false,
            Phase::Done => true,
            Phase::Draining { .. } | Phase::HangingUp { .. } if switchboard.stats().is_idle() => {
                let by_themselves = matches!(self.phase, Phase::Draining { .. });
                info!(by_themselves, "stopping: every call has ended");
                self.phase = Phase::Done;
                true
            }
            Phase::Draining { .. } | Phase::HangingUp { .. } => false,
        }
    }

    fn hang_up(&mut self, switchboard: &mut Switchboard, now: Instant) {
        let stats = switchboard.stats();
        info!(
            calls = stats.calls,
            agent_legs = stats.agent_legs,
            wait = ?self.hang_up_wait,
            "stopping: BYE to every caller and agent, CANCEL to ringing agents"
        );
        switchboard.handle_input(now, Input::HangUpAll);
        self.phase = Phase::HangingUp {
            until: now + self.hang_up_wait,
        };
    }
}

/// SIGTERM and SIGINT (Ctrl-C), each delivery as its name.
pub(super) fn stop_signals() -> anyhow::Result<mpsc::Receiver<&'static str>> {
    let (sender, receiver) = mpsc::channel(4);
    #[cfg(unix)]
    {
        use anyhow::Context;
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
        let mut interrupt = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
        tokio::spawn(async move {
            loop {
                let name = tokio::select! {
                    Some(()) = term.recv() => "SIGTERM",
                    Some(()) = interrupt.recv() => "SIGINT",
                    else => break,
                };
                if sender.send(name).await.is_err() {
                    break;
                }
            }
        });
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            if sender.send("Ctrl-C").await.is_err() {
                break;
            }
        }
    });
    Ok(receiver)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::media::prompts::PromptLibrary;

    fn switchboard() -> Switchboard {
        let config = crate::call::tests::config();
        let prompts = Arc::new(PromptLibrary::from_prompts(std::iter::empty()));
        let flows = Box::new(|_: &_| {
            Box::new(crate::ivr::echo::EchoFlow::new("en")) as Box<dyn crate::ivr::CallFlow>
        });
        Switchboard::new(config, prompts, flows, 1)
    }

    #[test]
    fn without_calls_the_first_signal_lets_the_service_exit_at_once() {
        let mut switchboard = switchboard();
        let mut shutdown = Shutdown::new(Duration::from_secs(300), Duration::from_millis(500));
        assert!(!shutdown.finished(&switchboard), "running");
        assert_eq!(shutdown.deadline(), None);
        shutdown.signal("SIGTERM", &mut switchboard, Instant::now());
        assert!(shutdown.finished(&switchboard));
    }

    #[test]
    fn the_grace_then_the_hang_up_wait_bound_the_stop_and_a_second_signal_skips_the_grace() {
        let t0 = Instant::now();
        let mut switchboard = switchboard();
        let mut shutdown = Shutdown::new(Duration::from_secs(300), Duration::from_millis(500));
        shutdown.signal("SIGTERM", &mut switchboard, t0);
        assert_eq!(shutdown.deadline(), Some(t0 + Duration::from_secs(300)));
        shutdown.expired(&mut switchboard, t0 + Duration::from_secs(299));
        assert_eq!(shutdown.deadline(), Some(t0 + Duration::from_secs(300)));
        shutdown.expired(&mut switchboard, t0 + Duration::from_secs(300));
        // 64·T1 = 32 s plus the margin.
        let hang_up_end = t0 + Duration::from_secs(334);
        assert_eq!(shutdown.deadline(), Some(hang_up_end));
        shutdown.signal("SIGINT", &mut switchboard, t0 + Duration::from_secs(301));
        assert_eq!(shutdown.deadline(), Some(hang_up_end), "nothing to skip");
        shutdown.expired(&mut switchboard, hang_up_end);
        assert_eq!(shutdown.deadline(), None);
        assert!(shutdown.finished(&switchboard));

        let mut shutdown = Shutdown::new(Duration::from_secs(300), Duration::from_millis(500));
        shutdown.signal("SIGTERM", &mut switchboard, t0);
        shutdown.signal("SIGTERM", &mut switchboard, t0 + Duration::from_secs(1));
        assert_eq!(
            shutdown.deadline(),
            Some(t0 + Duration::from_secs(35)),
            "hanging up at the second signal"
        );
    }
}
