//! The public edge against real attacker tools, on loopback and bounded: SIPVicious' svcrack
//! (password guessing through REGISTER) and svwar (extension enumeration), an INVITE flood from
//! SIPp next to a legitimate SIPp caller, and a scanner's OPTIONS.
//!
//! Attackers and callers use their own loopback addresses (127.0.0.3 and up): 127.0.0.1 is in
//! `security.rate_exempt` by default. SIPVicious 0.3.3 (Debian's `sipvicious`) ignores its own
//! `-b` option, so the tools are run through a small Python wrapper ([`SIPVICIOUS_WRAPPER`])
//! that binds them to the attacker's address, shortens their 10 s wait for an answer and, for
//! the "neutral" runs, replaces the tool's fixed `User-Agent: friendly-scanner` with a
//! softphone's, as any attacker can. `scripts/test` installs SIPp (sip-tester) and SIPVicious.

mod common;

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use md5::{Digest, Md5};

use common::{free_port, http_get, log_field, Service};

/// The flooder and the legitimate caller of the flood test.
const FLOODER: &str = "127.0.0.3";
const CALLER: &str = "127.0.0.4";
/// An agent of tests/fixtures/agents/credentials.toml (HA1 = MD5 of `anna:hotline:anna-secret`).
const AGENT: &str = "anna";
const AGENT_PASSWORD: &str = "anna-secret";
/// Where the right password sits in the svcrack word list of [`WORDS`] words.
const WORDS: usize = 200;
const RIGHT_WORD_AT: usize = 190;
/// `security.max_auth_failures`, `security.burst` (the defaults).
const MAX_AUTH_FAILURES: usize = 10;
const BURST: usize = 16;
/// A softphone's User-Agent, for attackers who hide their tool's.
const NEUTRAL_AGENT: &str = "Linphone/5.2.0 (belle-sip/5.2.0)";

/// Answers on loopback come within milliseconds; this is only the bound for a broken service.
const ANSWER_DEADLINE: Duration = Duration::from_secs(5);
/// The live snapshot behind /api/live and /metrics is published about once a second.
const SNAPSHOT_DEADLINE: Duration = Duration::from_secs(5);
/// A SIPVicious run is over in seconds; killed past this.
const TOOL_DEADLINE: Duration = Duration::from_secs(60);
/// How long a SIPVicious tool waits for an answer before it gives up (its own default is 10 s).
const TOOL_SOCKET_TIMEOUT_S: &str = "2";
/// SIPp runs are killed past this.
const SIPP_DEADLINE: Duration = Duration::from_secs(80);

// ---- svcrack ---------------------------------------------------------------------------------

/// svcrack as shipped announces itself (`User-Agent: friendly-scanner`): its first REGISTER is
/// silenced and the address banned, so not a single password is tried.
#[test]
fn svcrack_with_its_own_user_agent_is_silenced_before_its_first_guess() {
    let service = service_with_agents(&[]);
    let attacker = "127.0.0.5";
    let words = word_list(&service);
    let output = sipvicious(
        &service,
        "svcrack-default-agent",
        "svcrack",
        attacker,
        None,
        &["-u", AGENT, "-d", &words],
    );
    assert!(
        !output.contains(AGENT_PASSWORD),
        "svcrack found the password:\n{output}"
    );
    assert!(output.contains("found nothing"), "svcrack said:\n{output}");

    let scanner = security_lines(&service, "scanner", attacker);
    assert!(
        !scanner.is_empty(),
        "no `SECURITY event=scanner src={attacker}` line:\n{}",
        service.stderr_tail()
    );
    assert!(
        scanner[0].contains("agent=friendly-scanner"),
        "{}",
        scanner[0]
    );
    let guesses = security_lines(&service, "auth_failed", attacker).len();
    assert_eq!(guesses, 0, "the silenced scanner still had guesses checked");
    wait_for_ban(&service, attacker, "scanner");
    let events = wait_for_event(&service, "scanner", 1);
    println!("svcrack (friendly-scanner) from {attacker}: {guesses} guesses checked before silence, scanner events {events}");

    // The agent is not locked out by the attack on its name.
    let agent = UdpSocket::bind((CALLER, 0)).expect("agent socket");
    assert_eq!(register(&service, &agent, AGENT, AGENT_PASSWORD), 200);
}

/// svcrack with a softphone's User-Agent and the default limits: it is banned after a handful of
/// guesses (its REGISTERs outrun `security.rate`, and failed logins are counted too), far before
/// the right password. The same tool finds that password when it is the first it tries, so its
/// failure is the service's doing.
#[test]
fn svcrack_with_a_neutral_user_agent_is_banned_long_before_fifty_guesses() {
    let service = service_with_agents(&[]);
    let attacker = "127.0.0.6";

    // The control: the right password first, from another address.
    let control_words = service.dir().join("right-first.txt");
    fs::write(&control_words, format!("{AGENT_PASSWORD}\nwrong\n")).expect("writing words");
    let control = sipvicious(
        &service,
        "svcrack-control",
        "svcrack",
        "127.0.0.9",
        Some(NEUTRAL_AGENT),
        &[
            "-u",
            AGENT,
            "-d",
            control_words.to_str().expect("UTF-8 path"),
        ],
    );
    assert!(
        control.contains(AGENT_PASSWORD),
        "svcrack did not find the password it tried first, so the attack below proves nothing:\n{control}"
    );

    let words = word_list(&service);
    let output = sipvicious(
        &service,
        "svcrack-neutral-agent",
        "svcrack",
        attacker,
        Some(NEUTRAL_AGENT),
        &["-u", AGENT, "-d", &words],
    );
    assert!(
        !output.contains(AGENT_PASSWORD),
        "svcrack found the password:\n{output}"
    );
    assert!(output.contains("found nothing"), "svcrack said:\n{output}");

    let guesses = security_lines(&service, "auth_failed", attacker).len();
    let flood = security_lines(&service, "flood", attacker);
    let banned = security_lines(&service, "banned", attacker);
    assert!(
        !flood.is_empty() || !banned.is_empty(),
        "{attacker} was never banned ({guesses} failed logins):\n{}",
        service.stderr_tail()
    );
    assert!(
        guesses <= 50,
        "{guesses} guesses from {attacker} were checked before the ban"
    );
    assert!(
        guesses < RIGHT_WORD_AT,
        "the right password was within reach"
    );
    let reason = if flood.is_empty() {
        "login:anna"
    } else {
        "flood"
    };
    wait_for_ban(&service, attacker, reason);
    println!(
        "svcrack (neutral User-Agent) from {attacker}: {guesses} guesses checked, then banned ({})",
        if flood.is_empty() {
            "failed logins"
        } else {
            "request rate"
        }
    );

    let agent = UdpSocket::bind((CALLER, 0)).expect("agent socket");
    assert_eq!(register(&service, &agent, AGENT, AGENT_PASSWORD), 200);
}

/// With the request rate out of the way (an attacker patient enough to stay under it), the
/// login guard alone stops svcrack: after `max_auth_failures` wrong passwords the name is banned
/// from that address, and the right one, tried later, gets the same 403 as every wrong one.
#[test]
fn with_the_rate_limit_out_of_the_way_the_login_guard_alone_stops_svcrack() {
    let service = service_with_agents(&[
        ("HOTLINE__SECURITY__RATE", "100000"),
        ("HOTLINE__SECURITY__BURST", "100000"),
    ]);
    let attacker = "127.0.0.6";
    let words = word_list(&service);
    let output = sipvicious(
        &service,
        "svcrack-patient",
        "svcrack",
        attacker,
        Some(NEUTRAL_AGENT),
        &["-u", AGENT, "-d", &words],
    );
    assert!(
        !output.contains(AGENT_PASSWORD),
        "svcrack found the password:\n{output}"
    );
    assert!(output.contains("found nothing"), "svcrack said:\n{output}");

    let guesses = security_lines(&service, "auth_failed", attacker).len();
    assert_eq!(
        guesses,
        MAX_AUTH_FAILURES,
        "failed logins checked from {attacker}:\n{}",
        service.stderr_tail()
    );
    let banned = security_lines(&service, "banned", attacker);
    assert!(
        banned
            .iter()
            .any(|line| line.contains(&format!("user={AGENT} key={AGENT}@{attacker}"))),
        "no ban of {AGENT}@{attacker}: {banned:?}"
    );
    assert!(security_lines(&service, "flood", attacker).is_empty());
    // Every guess after the ban was refused unchecked, the right one (guess RIGHT_WORD_AT + 1)
    // among them.
    let refused = wait_for_event(&service, "banned_request", 1);
    assert!(
        refused as usize > RIGHT_WORD_AT - MAX_AUTH_FAILURES,
        "only {refused} guesses were refused as banned: svcrack never reached the right password"
    );
    wait_for_ban(&service, attacker, "login:anna");
    println!(
        "svcrack (neutral User-Agent, no rate limit) from {attacker}: {guesses} guesses checked, \
         {refused} refused unchecked after the ban"
    );

    // The ban is on anna@attacker: anna herself, elsewhere, still registers.
    let agent = UdpSocket::bind((CALLER, 0)).expect("agent socket");
    assert_eq!(register(&service, &agent, AGENT, AGENT_PASSWORD), 200);
}

// ---- svwar -----------------------------------------------------------------------------------

/// svwar enumerating numbers and agent names, with a registered agent among them: with its own
/// User-Agent it gets no answer at all; with a softphone's, every name gets the same answer as
/// its random probe, so it reports nothing, whichever method it uses. The agent is never rung.
#[test]
fn svwar_finds_no_extension_among_numbers_and_agent_names() {
    let routing =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/agents/registered.toml");
    let service = service_with_agents(&[("HOTLINE__ROUTING", routing.to_str().expect("UTF-8"))]);
    let agent = UdpSocket::bind((CALLER, 0)).expect("agent socket");
    assert_eq!(register(&service, &agent, AGENT, AGENT_PASSWORD), 200);
    let names = ["anna", "boris", "19118", "admin", "operator", "1000"];
    let names_file = service.dir().join("names.txt");
    fs::write(&names_file, names.join("\n") + "\n").expect("writing names");
    let names_file = names_file.to_str().expect("UTF-8 path").to_owned();
    let numbers: Vec<String> = (1000..=1010).map(|n| n.to_string()).collect();
    let numbers: Vec<&str> = numbers.iter().map(String::as_str).collect();
    let by_number = ["-e", "1000-1010"];
    let by_name = ["-d", names_file.as_str()];

    let runs = [
        Enumeration::new("127.0.0.20", None, "REGISTER", &by_number, &numbers, None),
        Enumeration::new("127.0.0.21", None, "INVITE", &by_name, &names, None),
        // svwar gives up after the first name: its answer is its probe's, a 401, which svwar
        // cannot interpret.
        Enumeration::new(
            "127.0.0.22",
            Some(NEUTRAL_AGENT),
            "REGISTER",
            &by_name,
            &names[..1],
            Some("SIP/2.0 401 Unauthorized"),
        ),
        Enumeration::new(
            "127.0.0.23",
            Some(NEUTRAL_AGENT),
            "INVITE",
            &by_number,
            &numbers,
            Some("SIP/2.0 200 OK"),
        ),
        Enumeration::new(
            "127.0.0.24",
            Some(NEUTRAL_AGENT),
            "INVITE",
            &by_name,
            &names,
            Some("SIP/2.0 200 OK"),
        ),
        Enumeration::new(
            "127.0.0.25",
            Some(NEUTRAL_AGENT),
            "OPTIONS",
            &by_name,
            &names,
            Some("SIP/2.0 200 OK"),
        ),
    ];
    let outputs: Vec<String> = thread::scope(|scope| {
        let service = &service;
        let handles: Vec<_> = runs
            .iter()
            .map(|run| {
                scope.spawn(move || {
                    let mut args = vec!["-m", run.method, "--debug"];
                    if run.method == "REGISTER" {
                        // svwar stops before it starts when an unknown name is challenged.
                        args.push("--force");
                    }
                    args.extend_from_slice(run.targets);
                    let label = format!("svwar-{}-{}", run.method, run.source);
                    sipvicious(service, &label, "svwar", run.source, run.user_agent, &args)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("svwar thread"))
            .collect()
    });

    for (run, output) in runs.iter().zip(&outputs) {
        let targets = match run.targets {
            ["-d", _] => format!("{names:?}"),
            targets => targets.join(" "),
        };
        let user_agent = run.user_agent.unwrap_or("friendly-scanner");
        let what = format!(
            "svwar -m {} {targets} from {} as {user_agent:?}",
            run.method, run.source
        );
        assert!(
            output.contains("found nothing") && !output.contains("exists"),
            "{what} found something:\n{output}"
        );
        let answers = answers(output);
        let Some(expected) = run.answer else {
            assert!(answers.is_empty(), "{what} was answered: {answers:?}");
            assert!(
                !security_lines(&service, "scanner", run.source).is_empty(),
                "{what}: no scanner event:\n{}",
                service.stderr_tail()
            );
            println!("{what}: silenced, no answer");
            continue;
        };
        let finals: Vec<&(String, String)> = answers
            .iter()
            .filter(|(status, _)| !status.starts_with("SIP/2.0 1"))
            .collect();
        assert!(
            finals.iter().all(|(status, _)| status == expected),
            "{what}: the answers differ: {finals:?}"
        );
        // Every name tried was answered, and so was svwar's random probe.
        let answered: BTreeSet<&str> = finals.iter().map(|(_, user)| user.as_str()).collect();
        for name in run.answered {
            assert!(
                answered.contains(name),
                "{what}: {name} was not answered ({answered:?})\n{output}"
            );
        }
        assert!(
            answered.len() > run.answered.len(),
            "{what}: the probe was not answered ({answered:?})"
        );
        assert!(
            security_lines_from(&service, run.source).is_empty(),
            "{what} was treated as an attack, so its answers prove nothing"
        );
        println!(
            "{what}: {} names answered, all {expected:?}",
            answered.len()
        );
    }
    // A call to the agent's name went to the hotline like any other: anna was never rung.
    agent
        .set_nonblocking(true)
        .expect("non-blocking agent socket");
    let mut buffer = [0u8; 4096];
    while let Ok((len, from)) = agent.recv_from(&mut buffer) {
        let text = String::from_utf8_lossy(&buffer[..len]);
        assert!(
            !text.starts_with("INVITE "),
            "the agent was rung from {from}:\n{text}"
        );
    }
}

/// One svwar run: from where, as whom, with which method and names (`targets` as svwar's
/// arguments), which names must be answered, and the answer all must get (`None`: silence).
struct Enumeration<'a> {
    source: &'a str,
    user_agent: Option<&'a str>,
    method: &'a str,
    targets: &'a [&'a str],
    answered: &'a [&'a str],
    answer: Option<&'a str>,
}

impl<'a> Enumeration<'a> {
    fn new(
        source: &'a str,
        user_agent: Option<&'a str>,
        method: &'a str,
        targets: &'a [&'a str],
        answered: &'a [&'a str],
        answer: Option<&'a str>,
    ) -> Self {
        Self {
            source,
            user_agent,
            method,
            targets,
            answered,
            answer,
        }
    }
}

// ---- INVITE flood ----------------------------------------------------------------------------

/// 20,000 INVITEs at full speed and then 250 a second for 20 s from one address, never ACKed,
/// while a caller from another address places 100 calls at 5 a second: the flooder is banned
/// and silenced, the calls go through, memory comes back, and lifting the ban lets the flooder's
/// address call again.
#[test]
fn an_invite_flood_is_silenced_while_calls_go_through_and_memory_comes_back() {
    // The flood's few unacknowledged calls end after 64·T1 without an ACK plus 64·T1 for the
    // BYE nobody answers: 32 s with T1 = 250 ms (64 s with the default 500 ms).
    let service = Service::start(&[
        ("HOTLINE__ROUTING", "builtin:echo"),
        ("HOTLINE__SIP__T1", "250ms"),
    ]);
    let pid = service_pid(&service);
    // One call first, so what the first call builds once is in the baseline.
    let warm_up = sipp(&service, "warm-up", "uac_basic.xml", CALLER, 1, 10, &[]);
    assert_eq!(
        (warm_up.successful, warm_up.failed),
        (1, 0),
        "{}",
        warm_up.diagnostics()
    );
    wait_for_no_calls(&service, Duration::from_secs(20));
    let rss_before = rss_kib(pid);

    let started = Instant::now();
    let (legit, flood) = thread::scope(|scope| {
        let service = &service;
        let legit =
            scope.spawn(move || sipp(service, "legit", "uac_basic.xml", CALLER, 100, 5, &[]));
        let full_speed = sipp(
            service,
            "flood-full-speed",
            "attack_invite_flood.xml",
            FLOODER,
            20_000,
            20_000,
            &["-nr"],
        );
        let steady = sipp(
            service,
            "flood-steady",
            "attack_invite_flood.xml",
            FLOODER,
            5_000,
            250,
            &["-nr"],
        );
        (
            legit.join().expect("legit SIPp thread"),
            [full_speed, steady],
        )
    });
    let flood_took = started.elapsed();
    let sent: u64 = flood.iter().map(|run| run.sent).sum();

    // The legitimate calls.
    let success_rate = legit.successful as f64 / 100.0;
    println!(
        "legitimate calls from {CALLER}: {} succeeded, {} failed ({:.1} %) during a flood of {sent} INVITEs over {flood_took:?}",
        legit.successful,
        legit.failed,
        success_rate * 100.0
    );
    assert!(success_rate >= 0.99, "{}", legit.diagnostics());
    assert!(
        security_lines_from(&service, CALLER).is_empty(),
        "the caller was taken for an attacker: {:?}",
        security_lines_from(&service, CALLER)
    );

    // The flooder: banned at once, silenced since.
    let flood_lines = security_lines(&service, "flood", FLOODER);
    assert!(
        !flood_lines.is_empty(),
        "no `SECURITY event=flood src={FLOODER}` line:\n{}",
        service.stderr_tail()
    );
    let flood_bans = wait_for_event(&service, "flood", 1);
    wait_for_ban(&service, FLOODER, "flood");
    let dropped = wait_for_event(&service, "dropped", 1);
    let answered = flood_calls_seen(&service);
    println!(
        "flood from {FLOODER}: {sent} INVITEs sent, {answered} taken as calls before the ban, \
         {dropped} dropped unanswered; flood events {flood_bans}"
    );
    // The burst, plus what the bucket (8/s) refills while the first second's INVITEs are read.
    assert!(
        answered <= BURST + 8,
        "{answered} flood INVITEs were taken as calls (burst {BURST})"
    );
    // Not all: the kernel may drop some of 20,000 a second before the service reads them.
    assert!(
        dropped as f64 >= 0.8 * sent as f64,
        "only {dropped} of {sent} flood INVITEs were dropped as banned"
    );

    // Memory, once every call (the flood's unacknowledged ones too) is over.
    wait_for_no_calls(&service, Duration::from_secs(60));
    let rss_after = rss_kib(pid);
    let rss_peak = status_kib(pid, "VmHWM:");
    println!(
        "RSS: {} KiB before the flood, {} KiB after the calls ended (peak {} KiB)",
        rss_before, rss_after, rss_peak
    );
    assert!(
        rss_after <= rss_before + RSS_GROWTH_LIMIT_KIB,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );

    // Still silenced: the caller's OPTIONS is answered, the flooder's (sent first) is not.
    let flooder = UdpSocket::bind((FLOODER, 0)).expect("flooder socket");
    let caller = UdpSocket::bind((CALLER, 0)).expect("caller socket");
    assert_eq!(
        options_answers(&service, &flooder, &caller, NEUTRAL_AGENT),
        (None, Some(200))
    );

    // Lifted, the address may call again.
    let (status, body) = http_request(
        service.http_addr(),
        "DELETE",
        &format!("/api/bans/{FLOODER}"),
    );
    assert_eq!(status, 200, "DELETE /api/bans/{FLOODER}: {body}");
    assert!(body.contains("\"lifted\""), "{body}");
    wait_until("the ban to leave /api/live", SNAPSHOT_DEADLINE, || {
        (!bans(&service).iter().any(|(address, _)| address == FLOODER)).then_some(())
    });
    let again = sipp(&service, "after-lift", "uac_basic.xml", FLOODER, 1, 10, &[]);
    assert_eq!(
        (again.successful, again.failed),
        (1, 0),
        "{}",
        again.diagnostics()
    );
}

/// How much the service's RSS may grow over the flood and the 100 calls, once they are over.
/// Measured: about +0.5 MiB (44.9 → 45.4 MiB, the peak no higher). The bound leaves room for
/// the allocator keeping freed pages, and is what keeping a third of a KiB per flood INVITE
/// would cost (25,000 × 336 B): the service must hold nothing for a dropped datagram.
const RSS_GROWTH_LIMIT_KIB: u64 = 8 * 1024;

// ---- scanner OPTIONS -------------------------------------------------------------------------

/// An OPTIONS that says `User-Agent: friendly-scanner` gets no answer, and its address stays
/// silenced whatever it says next; the same OPTIONS with a softphone's User-Agent gets 200.
#[test]
fn a_scanner_user_agent_gets_no_answer_and_a_normal_one_gets_200() {
    let service = Service::start(&[("HOTLINE__ROUTING", "builtin:echo")]);
    let scanner = UdpSocket::bind("127.0.0.7:0").expect("scanner socket");
    let normal = UdpSocket::bind("127.0.0.8:0").expect("normal socket");

    assert_eq!(
        options_answers(&service, &scanner, &normal, "friendly-scanner"),
        (None, Some(200))
    );
    let line = service
        .wait_for_log_line(
            |line| line.contains("SECURITY event=scanner src=127.0.0.7 "),
            ANSWER_DEADLINE,
        )
        .unwrap_or_else(|| panic!("no scanner event:\n{}", service.stderr_tail()));
    assert!(line.contains("agent=friendly-scanner"), "{line}");
    wait_for_ban(&service, "127.0.0.7", "scanner");
    assert!(wait_for_event(&service, "scanner", 1) >= 1);

    // Banned: a softphone's User-Agent from the same address is silenced too.
    assert_eq!(
        options_answers(&service, &scanner, &normal, NEUTRAL_AGENT),
        (None, Some(200))
    );
    assert!(wait_for_event(&service, "dropped", 1) >= 1);
    assert!(security_lines_from(&service, "127.0.0.8").is_empty());
}

// ---- helpers ---------------------------------------------------------------------------------

/// The service with agent registration (tests/fixtures/agents/credentials.toml) and echo
/// routing unless `extra` says otherwise.
fn service_with_agents(extra: &[(&str, &str)]) -> Service {
    let credentials =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/agents/credentials.toml");
    let credentials = credentials.to_str().expect("UTF-8 path").to_owned();
    let mut env = vec![
        ("HOTLINE__ROUTING", "builtin:echo"),
        ("HOTLINE__SIP__CREDENTIALS", credentials.as_str()),
    ];
    for (key, value) in extra {
        env.retain(|(existing, _)| existing != key);
        env.push((key, value));
    }
    Service::start(&env)
}

/// [`WORDS`] passwords with the right one at [`RIGHT_WORD_AT`]; returns the file's path.
fn word_list(service: &Service) -> String {
    let words: Vec<String> = (0..WORDS)
        .map(|n| {
            if n == RIGHT_WORD_AT {
                AGENT_PASSWORD.to_owned()
            } else {
                format!("guess{n:03}")
            }
        })
        .collect();
    let path = service.dir().join("words.txt");
    fs::write(&path, words.join("\n") + "\n").expect("writing the word list");
    path.to_str().expect("UTF-8 path").to_owned()
}

/// Runs svcrack or svwar as installed (`python3 -c WRAPPER TOOL BIND USER_AGENT TIMEOUT ARGS...`):
/// bound to BIND (the tools' own `-b` is lost on the way to their socket), with their answer
/// timeout set to TIMEOUT seconds, and with USER_AGENT in every request when it is not empty.
const SIPVICIOUS_WRAPPER: &str = r#"
import os, shutil, sys
tool, bind, agent, timeout = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
path = shutil.which(tool)
if path is None:
    sys.exit(tool + ' is not installed: run scripts/test (Debian package sipvicious)')
sys.path.insert(0, os.path.dirname(os.path.realpath(path)))
from sipvicious.libs import svhelper
if agent:
    make_request = svhelper.makeRequest
    def with_agent(*args, **kwargs):
        kwargs.setdefault('useragent', agent)
        return make_request(*args, **kwargs)
    svhelper.makeRequest = with_agent
if tool == 'svcrack':
    from sipvicious import svcrack as module
    scanner = module.ASipOfRedWine
else:
    from sipvicious import svwar as module
    scanner = module.TakeASip
init = scanner.__init__
def bound_init(self, *args, **kwargs):
    kwargs['bindingip'] = bind
    kwargs['externalip'] = bind
    init(self, *args, **kwargs)
    self.sock.settimeout(timeout)
scanner.__init__ = bound_init
sys.argv = [tool] + sys.argv[5:]
module.main()
"#;

/// Runs svcrack or svwar from `source`, with `user_agent` instead of the tool's own when given;
/// `args` come before the service's port and address. Returns what the tool printed.
fn sipvicious(
    service: &Service,
    label: &str,
    tool: &str,
    source: &str,
    user_agent: Option<&str>,
    args: &[&str],
) -> String {
    assert!(
        on_path(tool),
        "{tool} is not installed: run scripts/test (Debian package sipvicious)"
    );
    let log_path = service.dir().join(format!("{label}.log"));
    let log = File::create(&log_path).expect("creating the tool's log");
    let log_err = log.try_clone().expect("cloning the log handle");
    let sip = service.sip_addr();
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(SIPVICIOUS_WRAPPER)
        .args([
            tool,
            source,
            user_agent.unwrap_or(""),
            TOOL_SOCKET_TIMEOUT_S,
        ])
        .args(args)
        .args(["-p", &sip.port().to_string(), "--maximumtime", "2"])
        .arg(sip.ip().to_string())
        .current_dir(service.dir())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .unwrap_or_else(|error| panic!("starting python3 for {tool}: {error}"));
    let deadline = Instant::now() + TOOL_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the tool") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{label} ran past {TOOL_DEADLINE:?}:\n{}",
                fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        thread::sleep(Duration::from_millis(50));
    };
    let output = fs::read_to_string(&log_path).unwrap_or_default();
    assert!(status.success(), "{label} failed ({status}):\n{output}");
    assert!(!output.contains("Traceback"), "{label} crashed:\n{output}");
    output
}

fn on_path(command: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(command).is_file()))
}

/// The answers svwar printed with `--debug` (`b'SIP/2.0 200 OK\r\nVia: ...'`, one a line): each
/// one's status line and the user its To header names (the name being tried).
fn answers(output: &str) -> Vec<(String, String)> {
    output
        .lines()
        .filter_map(|line| {
            let text = line
                .strip_prefix("b'")
                .or_else(|| line.strip_prefix("b\""))?;
            if !text.starts_with("SIP/2.0 ") {
                return None;
            }
            let mut fields = text.split("\\r\\n");
            let status = fields.next().unwrap_or_default().to_owned();
            let to_user = fields
                .find_map(|field| field.strip_prefix("To: "))
                .and_then(|to| to.split("<sip:").nth(1))
                .and_then(|uri| uri.split('@').next())
                .unwrap_or_default()
                .to_owned();
            Some((status, to_user))
        })
        .collect()
}

/// `SECURITY event=EVENT src=SOURCE` lines so far.
fn security_lines(service: &Service, event: &str, source: &str) -> Vec<String> {
    let wanted = format!("SECURITY event={event} src={source} ");
    service
        .log_lines()
        .into_iter()
        .filter(|line| line.contains(&wanted))
        .collect()
}

/// Every security event about `source`.
fn security_lines_from(service: &Service, source: &str) -> Vec<String> {
    let wanted = format!(" src={source} ");
    service
        .log_lines()
        .into_iter()
        .filter(|line| line.contains("SECURITY event=") && line.contains(&wanted))
        .collect()
}

/// Polls `probe` until it gives a value, up to `timeout`.
fn wait_until<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        thread::sleep(Duration::from_millis(100));
    }
}

/// `hotline_security_events_total{event=EVENT}` once it is at least `at_least`.
fn wait_for_event(service: &Service, event: &str, at_least: u64) -> u64 {
    let http = service.http_addr();
    let sample = format!("hotline_security_events_total{{event=\"{event}\"}} ");
    wait_until(&format!("{sample}>= {at_least}"), SNAPSHOT_DEADLINE, || {
        let (status, body) = http_get(http, "/metrics", None);
        assert_eq!(status, 200, "/metrics: {body}");
        body.lines()
            .find_map(|line| line.strip_prefix(&sample))
            .and_then(|value| value.trim().parse::<u64>().ok())
            .filter(|value| *value >= at_least)
    })
}

/// The bans in /api/live: (address, reason).
fn bans(service: &Service) -> Vec<(String, String)> {
    let (status, body) = http_get(service.http_addr(), "/api/live", None);
    assert_eq!(status, 200, "/api/live: {body}");
    let live: serde_json::Value = serde_json::from_str(&body).expect("/api/live is JSON");
    live["security"]["bans"]
        .as_array()
        .unwrap_or_else(|| panic!("no security.bans in /api/live: {body}"))
        .iter()
        .map(|ban| {
            (
                ban["address"].as_str().unwrap_or_default().to_owned(),
                ban["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Waits until /api/live lists a ban on `address` for `reason`, and that it is also counted in
/// `hotline_security_bans`.
fn wait_for_ban(service: &Service, address: &str, reason: &str) {
    wait_until(
        &format!("a {reason} ban on {address} in /api/live"),
        SNAPSHOT_DEADLINE,
        || {
            bans(service)
                .iter()
                .any(|(banned, why)| banned == address && why == reason)
                .then_some(())
        },
    );
    let (_, metrics) = http_get(service.http_addr(), "/metrics", None);
    let in_force = metrics
        .lines()
        .find_map(|line| line.strip_prefix("hotline_security_bans "))
        .and_then(|value| value.trim().parse::<u64>().ok());
    assert!(
        in_force.is_some_and(|bans| bans >= 1),
        "hotline_security_bans {in_force:?}"
    );
}

/// Waits until /api/live lists no call.
fn wait_for_no_calls(service: &Service, timeout: Duration) {
    wait_until("every call to end", timeout, || {
        let (_, body) = http_get(service.http_addr(), "/api/live", None);
        let live: serde_json::Value = serde_json::from_str(&body).ok()?;
        live["calls"]
            .as_array()
            .is_some_and(|calls| calls.is_empty())
            .then_some(())
    });
}

/// The flood's INVITEs the service took as calls: distinct Call-IDs logged from the flooder.
fn flood_calls_seen(service: &Service) -> usize {
    let from_flooder = format!("remote={FLOODER}:");
    service
        .log_lines()
        .iter()
        .filter(|line| line.contains(&from_flooder))
        .filter_map(|line| log_field(line, "call_id"))
        .collect::<BTreeSet<String>>()
        .len()
}

fn service_pid(service: &Service) -> u32 {
    let path = service.dir().join("hotline.pid");
    let text = fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
    text.trim()
        .parse()
        .unwrap_or_else(|error| panic!("pid file {text:?}: {error}"))
}

fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// A `kB` field of /proc/PID/status.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|error| panic!("reading /proc/{pid}/status: {error}"));
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// One HTTP/1.0 request without a body: status and body.
fn http_request(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect_timeout(&addr, ANSWER_DEADLINE)
        .unwrap_or_else(|error| panic!("connecting to {addr}: {error}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap_or_else(|error| panic!("sending {method} {path}: {error}"));
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .unwrap_or_else(|error| panic!("reading the answer to {method} {path}: {error}"));
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers: {response:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, body.to_owned())
}

/// Sends an OPTIONS with `user_agent` from `suspect`, then a softphone's from `reference`, and
/// returns the status each got. The service reads both from one socket in order, so once the
/// reference's answer is in, any answer to the suspect would be too (loopback delivers at once);
/// a short grace covers the scheduler all the same.
fn options_answers(
    service: &Service,
    suspect: &UdpSocket,
    reference: &UdpSocket,
    user_agent: &str,
) -> (Option<u16>, Option<u16>) {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    send_options(service, suspect, user_agent, &format!("suspect-{n}"));
    send_options(service, reference, NEUTRAL_AGENT, &format!("reference-{n}"));
    let reference_status = receive_status(reference, ANSWER_DEADLINE);
    let suspect_status = receive_status(suspect, Duration::from_millis(300));
    (suspect_status, reference_status)
}

fn send_options(service: &Service, socket: &UdpSocket, user_agent: &str, call_id: &str) {
    let local = socket.local_addr().expect("local address");
    let sip = service.sip_addr();
    let request = format!(
        "OPTIONS sip:{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{call_id};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:probe@{local}>;tag={call_id}\r\nTo: <sip:{sip}>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nContact: <sip:probe@{local}>\r\n\
         User-Agent: {user_agent}\r\nAccept: application/sdp\r\nContent-Length: 0\r\n\r\n"
    );
    socket
        .send_to(request.as_bytes(), sip)
        .expect("sending OPTIONS");
}

/// The status of the next final answer on `socket` within `timeout`.
fn receive_status(socket: &UdpSocket, timeout: Duration) -> Option<u16> {
    let deadline = Instant::now() + timeout;
    let mut buffer = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        socket.set_read_timeout(Some(left)).expect("read timeout");
        let Ok((len, _)) = socket.recv_from(&mut buffer) else {
            return None;
        };
        let text = String::from_utf8_lossy(&buffer[..len]);
        let status = text
            .strip_prefix("SIP/2.0 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse::<u16>().ok());
        if let Some(status) = status.filter(|status| *status >= 200) {
            return Some(status);
        }
    }
}

/// Registers `user` from `socket` with digest authentication, as a softphone does; returns the
/// final status.
fn register(service: &Service, socket: &UdpSocket, user: &str, password: &str) -> u16 {
    let sip = service.sip_addr();
    let local = socket.local_addr().expect("local address");
    let uri = format!("sip:{sip}");
    let call_id = format!("register-{user}-{}", local.port());
    let build = |cseq: u32, authorization: Option<String>| {
        format!(
            "REGISTER {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{call_id}-{cseq};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{user}@{sip}>;tag={call_id}\r\nTo: <sip:{user}@{sip}>\r\n\
             Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{user}@{local}>\r\n\
             Expires: 300\r\nUser-Agent: {NEUTRAL_AGENT}\r\n{}Content-Length: 0\r\n\r\n",
            authorization
                .map(|value| format!("Authorization: {value}\r\n"))
                .unwrap_or_default()
        )
    };
    let exchange = |request: String| -> String {
        socket
            .send_to(request.as_bytes(), sip)
            .expect("sending REGISTER");
        socket
            .set_read_timeout(Some(ANSWER_DEADLINE))
            .expect("read timeout");
        let mut buffer = [0u8; 8192];
        loop {
            let (len, _) = socket
                .recv_from(&mut buffer)
                .unwrap_or_else(|error| panic!("no answer to REGISTER: {error}"));
            let text = String::from_utf8_lossy(&buffer[..len]).into_owned();
            if text.starts_with("SIP/2.0 ") && !text.starts_with("SIP/2.0 1") {
                return text;
            }
        }
    };
    let status = |answer: &str| -> u16 {
        answer
            .get(8..11)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("no status in {answer:?}"))
    };
    let challenge = exchange(build(1, None));
    if status(&challenge) != 401 {
        return status(&challenge);
    }
    let header = challenge
        .lines()
        .find_map(|line| line.strip_prefix("WWW-Authenticate: "))
        .unwrap_or_else(|| panic!("401 without WWW-Authenticate: {challenge}"));
    let param = |name: &str| -> String {
        let start = header
            .find(&format!("{name}=\""))
            .unwrap_or_else(|| panic!("no {name} in {header}"))
            + name.len()
            + 2;
        header[start..]
            .split('"')
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    let (realm, nonce) = (param("realm"), param("nonce"));
    let hex = |text: String| -> String {
        Md5::digest(text.as_bytes())
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    };
    let ha1 = hex(format!("{user}:{realm}:{password}"));
    let ha2 = hex(format!("REGISTER:{uri}"));
    let (nc, cnonce) = ("00000001", "0a4f113b");
    let response = hex(format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
    let authorization = format!(
        "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{response}\", algorithm=MD5, qop=auth, nc={nc}, cnonce=\"{cnonce}\""
    );
    status(&exchange(build(2, Some(authorization))))
}

/// One SIPp run from `source` (SIPp's own `-i`; the shared runner binds 127.0.0.1).
struct SippOutcome {
    sent: u64,
    successful: u64,
    failed: u64,
    dir: PathBuf,
}

impl SippOutcome {
    fn diagnostics(&self) -> String {
        let errors = fs::read_to_string(self.dir.join("errors.log")).unwrap_or_default();
        let errors: String = errors.chars().take(8000).collect();
        let output = fs::read_to_string(self.dir.join("output.log")).unwrap_or_default();
        let tail: Vec<&str> = output.lines().rev().take(40).collect();
        format!(
            "SIPp in {}: sent {} calls, {} succeeded, {} failed\n-- errors.log --\n{errors}\n-- output.log (tail) --\n{}",
            self.dir.display(),
            self.sent,
            self.successful,
            self.failed,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    }
}

fn sipp(
    service: &Service,
    label: &str,
    scenario: &str,
    source: &str,
    calls: u32,
    rate: u32,
    extra: &[&str],
) -> SippOutcome {
    let scenario = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(scenario);
    let dir = service.dir().join(format!("sipp-{label}"));
    fs::create_dir_all(&dir).expect("creating SIPp's folder");
    let output = File::create(dir.join("output.log")).expect("creating SIPp's output log");
    let output_err = output.try_clone().expect("cloning the log handle");
    let mut child = Command::new("sipp")
        .arg(service.sip_addr().to_string())
        .arg("-sf")
        .arg(&scenario)
        .args(["-s", "19118", "-i", source, "-mi", source])
        .args(["-p", &free_port(false, false).to_string()])
        .args(["-mp", &free_port(false, true).to_string()])
        .args(["-cp", &free_port(false, false).to_string()])
        .args([
            "-t",
            "u1",
            "-m",
            &calls.to_string(),
            "-r",
            &rate.to_string(),
        ])
        .args(["-max_socket", "512", "-timeout", "70s", "-timeout_error"])
        .args(["-recv_timeout", "10s", "-nostdin"])
        .arg("-trace_err")
        .arg("-error_file")
        .arg(dir.join("errors.log"))
        .arg("-trace_stat")
        .arg("-stf")
        .arg(dir.join("stats.csv"))
        .args(extra)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(output)
        .stderr(output_err)
        .spawn()
        .unwrap_or_else(|error| {
            panic!("starting sipp (run scripts/test: Debian package sip-tester): {error}")
        });
    let deadline = Instant::now() + SIPP_DEADLINE;
    loop {
        if child.try_wait().expect("waiting for sipp").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "SIPp {label} ran past {SIPP_DEADLINE:?} (see {})",
                dir.display()
            );
        }
        thread::sleep(Duration::from_millis(25));
    }
    let stats = fs::read_to_string(dir.join("stats.csv")).unwrap_or_default();
    let mut rows = stats.lines().filter(|line| !line.trim().is_empty());
    let header: Vec<&str> = rows.next().unwrap_or_default().split(';').collect();
    let last: Vec<&str> = rows.next_back().unwrap_or_default().split(';').collect();
    let counter = |name: &str| -> u64 {
        header
            .iter()
            .position(|column| *column == name)
            .and_then(|at| last.get(at))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in SIPp's statistics in {}", dir.display()))
    };
    SippOutcome {
        sent: counter("OutgoingCall(C)"),
        successful: counter("SuccessfulCall(C)"),
        failed: counter("FailedCall(C)"),
        dir,
    }
}
