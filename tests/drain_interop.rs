//! The graceful stop end to end: SIPp callers in the menu and bridged to SIPp agents, then
//! SIGTERM to the real `hotline serve`. While it drains, a new call and a dispatcher's OPTIONS
//! get 503 and the calls go on; after `shutdown.grace` every caller and agent gets BYE, the
//! process exits 0 and every call's record is in the database with its outcome. A second
//! SIGTERM skips the rest of a long grace.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::thread;
use std::time::{Duration, Instant};

use common::{wait_for_count, Service, Sipp, SippPorts, SippRun, SippStats, Transport};
use hotline::cdr::{CallFilter, CallRecord, CdrStore, Outcome, Page};

/// Answering, menus, bridging: each well within this on loopback.
const SIGNALLING_DEADLINE: Duration = Duration::from_secs(20);
/// The grace of the first test.
const GRACE: Duration = Duration::from_secs(3);
/// From the end of the grace (or the second signal) to the exit: BYEs answered on loopback
/// at once, records written. Far below the service's own bound (64·T1).
const EXIT_DEADLINE: Duration = Duration::from_secs(15);
/// How long SIPp's agent UAS may take to bind its port.
const BIND_DEADLINE: Duration = Duration::from_secs(15);

/// tests/fixtures/agents/drain.toml with the desk agents on the SIPp UAS's port.
fn routing_for(agent_port: u16) -> PathBuf {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/agents/drain.toml");
    let routing = fs::read_to_string(&fixture)
        .unwrap()
        .replace("127.0.0.1:5601", &format!("127.0.0.1:{agent_port}"));
    let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("drain-{}-{agent_port}.toml", std::process::id()));
    fs::write(&path, routing).unwrap();
    path
}

/// Waits until something has bound UDP `port` on 127.0.0.1 (looked up, not probed by binding).
fn wait_until_bound(port: u16) {
    let bound = format!("0100007F:{port:04X} ");
    let deadline = Instant::now() + BIND_DEADLINE;
    while !fs::read_to_string("/proc/net/udp")
        .unwrap_or_default()
        .contains(&bound)
    {
        assert!(Instant::now() < deadline, "SIPp never bound {port}");
        thread::sleep(Duration::from_millis(20));
    }
}

fn all_calls_succeeded(run: &SippRun, calls: u64, who: &str) {
    assert_eq!(
        (run.stats, run.exit_code),
        (
            SippStats {
                successful: calls,
                failed: 0
            },
            Some(0)
        ),
        "{who}\n{}",
        run.diagnostics()
    );
}

/// True for the driver's periodic `state` line showing exactly these counts.
fn state_is(line: &str, calls: u64, agent_legs: u64) -> bool {
    let field = |name| common::log_field(line, name).and_then(|v| v.parse::<u64>().ok());
    line.contains(" state ")
        && field("calls") == Some(calls)
        && field("agent_legs") == Some(agent_legs)
}

/// Every record in the service's database once it has exited: (completed, still live).
fn stored_records(service: &Service) -> (Vec<CallRecord>, usize) {
    let database = format!("sqlite://{}", service.dir().join("hotline.db").display());
    let reader_spool = service.dir().join("reader-spool.jsonl");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = CdrStore::connect(&database, &reader_spool).await.unwrap();
        let page = Page {
            limit: 100,
            offset: 0,
        };
        let records = store.calls(&CallFilter::default(), page).await.unwrap();
        let live = store.live_calls().await.unwrap().len();
        (records, live)
    })
}

fn outcomes(records: &[CallRecord]) -> Vec<Outcome> {
    let mut outcomes: Vec<Outcome> = records.iter().map(|record| record.outcome).collect();
    outcomes.sort();
    outcomes
}

fn exited_cleanly(service: &mut Service, within: Duration) -> ExitStatus {
    let status = service
        .wait_for_exit(within)
        .unwrap_or_else(|| panic!("the service was still running {within:?} after the stop"));
    assert_eq!(
        status.code(),
        Some(0),
        "exit status {status}\n{}",
        service.stderr_tail()
    );
    status
}

/// 3 callers in the menu, 2 bridged to agents; SIGTERM; a new call and an OPTIONS get 503;
/// after the 3 s grace all 5 callers and both agents get BYE, the service exits 0, and the
/// records say `interrupted` (menu), `connected` (bridged) and `rejected` (the refused call).
#[test]
fn sigterm_refuses_new_calls_then_hangs_up_after_the_grace_and_records_every_call() {
    let agent_ports = SippPorts::pick(Transport::Udp);
    let routing = routing_for(agent_ports.signalling);
    let mut service = Service::start(&[
        ("HOTLINE__ROUTING", routing.to_str().unwrap()),
        ("HOTLINE__SHUTDOWN__GRACE", "3s"),
    ]);
    let (agents, menu, bridged, stopped_at) = thread::scope(|scope| {
        let service = &service;
        let agents = scope.spawn(move || {
            Sipp::new("drain_agent.xml")
                .ports(agent_ports)
                .calls(2)
                .run(service)
        });
        wait_until_bound(agent_ports.signalling);
        let menu = scope.spawn(move || {
            let run = Sipp::new("drain_menu_caller.xml").calls(3).run(service);
            (run, Instant::now())
        });
        let bridged =
            scope.spawn(move || Sipp::new("drain_agent_caller.xml").calls(2).run(service));
        assert!(
            wait_for_count(service, "media bridged", 2, SIGNALLING_DEADLINE),
            "both agent callers bridged"
        );
        assert!(
            service
                .wait_for_log_line(|line| state_is(line, 5, 2), SIGNALLING_DEADLINE)
                .is_some(),
            "5 calls and 2 agent legs up before the stop"
        );

        service.send_signal(libc::SIGTERM);
        let stopped_at = Instant::now();
        assert!(
            service
                .wait_for_log_line(
                    |line| line.contains("stopping: new calls get 503"),
                    SIGNALLING_DEADLINE
                )
                .is_some(),
            "the service logs the drain"
        );
        let refused = Sipp::new("drain_refused.xml").run(service);
        all_calls_succeeded(
            &refused,
            1,
            "a new INVITE while draining gets 503 + Retry-After",
        );
        let probe = Sipp::new("drain_options.xml").run(service);
        all_calls_succeeded(&probe, 1, "OPTIONS while draining gets 503");
        assert!(
            stopped_at.elapsed() < GRACE,
            "the 503s were checked within the grace (took {:?}): the test proves nothing",
            stopped_at.elapsed()
        );
        (
            agents.join().unwrap(),
            menu.join().unwrap(),
            bridged.join().unwrap(),
            stopped_at,
        )
    });
    let (menu, menu_ended) = menu;
    all_calls_succeeded(&menu, 3, "menu callers: BYE from the service, answered");
    all_calls_succeeded(
        &bridged,
        2,
        "bridged callers: BYE from the service, answered",
    );
    all_calls_succeeded(&agents, 2, "agents: BYE from the service, answered");
    assert!(
        menu_ended.duration_since(stopped_at) >= GRACE,
        "calls went on for the grace: the callers' BYE came {:?} after SIGTERM",
        menu_ended.duration_since(stopped_at)
    );
    exited_cleanly(&mut service, EXIT_DEADLINE);
    let log = service.log_lines();
    for phase in [
        "stopping: new calls get 503",
        "grace over",
        "stopping: BYE to every caller and agent",
        "stopping: every call has ended",
        "stopped: call records written",
    ] {
        assert!(
            log.iter().any(|line| line.contains(phase)),
            "no `{phase}` in the log"
        );
    }

    let (records, live) = stored_records(&service);
    assert_eq!(live, 0, "every call's record is closed: {records:#?}");
    assert_eq!(
        outcomes(&records),
        outcomes_sorted(&[
            Outcome::Interrupted,
            Outcome::Interrupted,
            Outcome::Interrupted,
            Outcome::Connected,
            Outcome::Connected,
            Outcome::Rejected,
        ]),
        "{records:#?}"
    );
    let connected: Vec<&CallRecord> = records
        .iter()
        .filter(|record| record.outcome == Outcome::Connected)
        .collect();
    assert!(
        connected
            .iter()
            .all(|record| record.agent.is_some() && record.agent_answered.is_some()),
        "{connected:#?}"
    );
}

/// A second SIGTERM during a 5-minute grace hangs up at once: the service exits promptly, 0,
/// with both calls recorded.
#[test]
fn a_second_sigterm_skips_the_grace() {
    let agent_ports = SippPorts::pick(Transport::Udp);
    let routing = routing_for(agent_ports.signalling);
    let mut service = Service::start(&[
        ("HOTLINE__ROUTING", routing.to_str().unwrap()),
        ("HOTLINE__SHUTDOWN__GRACE", "5m"),
    ]);
    let second_at = thread::scope(|scope| {
        let service = &service;
        let agents = scope.spawn(move || {
            Sipp::new("drain_agent.xml")
                .ports(agent_ports)
                .calls(1)
                .run(service)
        });
        wait_until_bound(agent_ports.signalling);
        let menu = scope.spawn(move || Sipp::new("drain_menu_caller.xml").run(service));
        let bridged = scope.spawn(move || Sipp::new("drain_agent_caller.xml").run(service));
        assert!(
            service
                .wait_for_log_line(|line| state_is(line, 2, 1), SIGNALLING_DEADLINE)
                .is_some()
                && wait_for_count(service, "media bridged", 1, SIGNALLING_DEADLINE),
            "a menu call and a bridged call up before the stop"
        );
        service.send_signal(libc::SIGTERM);
        assert!(
            service
                .wait_for_log_line(
                    |line| line.contains("stopping: new calls get 503"),
                    SIGNALLING_DEADLINE
                )
                .is_some(),
            "the first SIGTERM starts the drain"
        );
        service.send_signal(libc::SIGTERM);
        let second_at = Instant::now();
        all_calls_succeeded(&menu.join().unwrap(), 1, "menu caller: BYE");
        all_calls_succeeded(&bridged.join().unwrap(), 1, "bridged caller: BYE");
        all_calls_succeeded(&agents.join().unwrap(), 1, "agent: BYE");
        second_at
    });
    exited_cleanly(&mut service, EXIT_DEADLINE);
    println!("exited {:?} after the second SIGTERM", second_at.elapsed());
    let log = service.log_lines();
    assert!(
        log.iter()
            .any(|line| line.contains("second signal: not waiting for the rest of the grace")),
        "the second signal is logged"
    );
    assert!(
        !log.iter().any(|line| line.contains("grace over")),
        "the grace never ran out"
    );
    let (records, live) = stored_records(&service);
    assert_eq!(live, 0, "{records:#?}");
    assert_eq!(
        outcomes(&records),
        outcomes_sorted(&[Outcome::Interrupted, Outcome::Connected]),
        "{records:#?}"
    );
}

/// With a 5-minute grace, a call that ends by itself (the caller's BYE, 3 s into the call) lets
/// the service exit at once, 0, with the call recorded as the caller left it.
#[test]
fn the_service_exits_as_soon_as_the_last_call_ends_by_itself() {
    let mut service = Service::start(&[
        ("HOTLINE__ROUTING", routing_for(5601).to_str().unwrap()),
        ("HOTLINE__SHUTDOWN__GRACE", "5m"),
    ]);
    let stopped_at = thread::scope(|scope| {
        let service = &service;
        let caller = scope.spawn(move || Sipp::new("uac_basic.xml").run(service));
        assert!(
            service
                .wait_for_log_line(|line| line.contains("incoming call"), SIGNALLING_DEADLINE)
                .is_some(),
            "the call arrived"
        );
        service.send_signal(libc::SIGINT);
        let stopped_at = Instant::now();
        all_calls_succeeded(&caller.join().unwrap(), 1, "the caller hangs up by itself");
        stopped_at
    });
    exited_cleanly(&mut service, EXIT_DEADLINE);
    println!("exited {:?} after SIGINT", stopped_at.elapsed());
    let log = service.log_lines();
    let ended = log
        .iter()
        .find(|line| line.contains("stopping: every call has ended"))
        .expect("the end of the drain is logged");
    assert_eq!(
        common::log_field(ended, "by_themselves").as_deref(),
        Some("true"),
        "{ended}"
    );
    assert!(
        log.iter().any(|line| line.contains("signal=\"SIGINT\"")),
        "SIGINT stops the service like SIGTERM"
    );
    assert!(
        !log.iter()
            .any(|line| line.contains("hanging up every call")),
        "nothing was left to hang up"
    );
    let (records, live) = stored_records(&service);
    assert_eq!(live, 0, "{records:#?}");
    assert_eq!(
        outcomes(&records),
        vec![Outcome::AbandonedMenu],
        "{records:#?}"
    );
}

fn outcomes_sorted(outcomes: &[Outcome]) -> Vec<Outcome> {
    let mut outcomes = outcomes.to_vec();
    outcomes.sort();
    outcomes
}
