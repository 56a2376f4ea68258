//! No record left open: two SIPp callers wait in a queue, the service is killed with SIGKILL,
//! and their records stay without an end. A service with another node name started on the same
//! database leaves them alone (they could be its neighbour's live calls); the same node started
//! again closes exactly those two as `interrupted`, ended at the last time known for them, with
//! an `interrupted` audit event, and counts them in `/metrics`. On SQLite and on PostgreSQL,
//! where the database is also down when the node starts again: it closes them once it is back.

mod common;
mod pg_server;

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use common::{log_field, wait_for_count, Service, Sipp, SippRun};
use hotline::cdr::{CallFilter, CdrStore, Outcome, Page};
use pg_server::TestPostgres;

/// How long the callers stay in the queue: far longer than the test needs to kill the service
/// and start it twice, so the calls are up (for SIPp) all along.
const HOLD: Duration = Duration::from_secs(25);
/// The same with a database outage, which the service retries every 10 s.
const HOLD_WITH_OUTAGE: Duration = Duration::from_secs(45);
/// Both calls reach the queue well within this.
const QUEUED_DEADLINE: Duration = Duration::from_secs(20);
/// A started service logs its closing of interrupted records within this.
const CLOSING_DEADLINE: Duration = Duration::from_secs(20);
/// The line the service logs once it has closed its interrupted records.
const CLOSED_LINE: &str = "closed the call records a stopped run left open";

fn routing() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/routing/cdr_sipp.toml")
}

fn start_node(database_url: &str, node: &str, spool: &Path) -> Service {
    Service::start(&[
        ("HOTLINE__ROUTING", routing().to_str().unwrap()),
        ("HOTLINE__DATABASE__URL", database_url),
        ("HOTLINE__DATABASE__SPOOL", spool.to_str().unwrap()),
        ("HOTLINE__NODE__NAME", node),
    ])
}

/// Waits for the service's report of its closing and returns how many it closed.
fn closed_at_start(service: &Service, node: &str) -> u64 {
    let line = service
        .wait_for_log_line(|line| line.contains(CLOSED_LINE), CLOSING_DEADLINE)
        .unwrap_or_else(|| panic!("node {node} did not report closing interrupted records"));
    assert_eq!(log_field(&line, "node").as_deref(), Some(node), "{line}");
    log_field(&line, "closed")
        .and_then(|closed| closed.parse().ok())
        .unwrap_or_else(|| panic!("no closed= in {line:?}"))
}

/// `(call_id, node)` of every row still without an end.
async fn open_rows(database_url: &str) -> BTreeSet<(String, Option<String>)> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(database_url).await.unwrap();
    let rows: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT call_id, node FROM calls WHERE ended_ms IS NULL")
            .fetch_all(&pool)
            .await
            .unwrap();
    pool.close().await;
    rows.into_iter().collect()
}

/// The HTTP address the service logged (no token: loopback only, no authorisation).
fn http_addr(service: &Service) -> SocketAddr {
    let line = service
        .wait_for_log_line(
            |line| line.contains("HTTP API and dashboard listening"),
            Duration::from_secs(5),
        )
        .expect("the service logs its HTTP address");
    log_field(&line, "http_addr")
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no http_addr in {line:?}"))
}

fn metrics(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"));
    response
}

/// The Call-IDs SIPp used, from its message trace.
fn sipp_call_ids(run: &SippRun) -> BTreeSet<String> {
    let trace = fs::read_to_string(run.dir.join("messages.log")).unwrap();
    trace
        .lines()
        .filter_map(|line| line.trim().strip_prefix("Call-ID:"))
        .map(|id| id.trim().to_owned())
        .collect()
}

/// With `outage`, that server is down when node-a starts again and back after a while.
fn killed_calls_are_closed_by_their_own_node_only(
    database_url: &str,
    outage: Option<&TestPostgres>,
) {
    let hold = if outage.is_some() {
        HOLD_WITH_OUTAGE
    } else {
        HOLD
    };
    let dir = tempfile::tempdir().unwrap();
    let spool_a = dir.path().join("node-a-spool.jsonl");
    let runtime = tokio::runtime::Runtime::new().unwrap();

    let service_a = start_node(database_url, "node-a", &spool_a);
    assert_eq!(closed_at_start(&service_a, "node-a"), 0);
    let (sipp, open_before) = thread::scope(|scope| {
        let callers = scope.spawn(|| {
            // Key 2: the backlog group, whose agent never answers; then a long hold. The run
            // fails (its BYE finds no service), which is the point.
            Sipp::new("cdr_key2_hold.xml")
                .calls(2)
                .pause(hold)
                .run(&service_a)
        });
        let started = Instant::now();
        assert!(
            wait_for_count(&service_a, "queued for agents", 2, QUEUED_DEADLINE),
            "the two callers did not reach the queue"
        );
        let open = runtime.block_on(open_rows(database_url));
        assert_eq!(open.len(), 2, "{open:?}");
        assert!(open
            .iter()
            .all(|(_, node)| node.as_deref() == Some("node-a")));
        service_a.kill_hard();

        // Another node on the same database: those may be its neighbour's live calls.
        let spool_b = dir.path().join("node-b-spool.jsonl");
        let service_b = start_node(database_url, "node-b", &spool_b);
        assert_eq!(closed_at_start(&service_b, "node-b"), 0);
        assert_eq!(runtime.block_on(open_rows(database_url)), open);
        drop(service_b);

        if let Some(postgres) = outage {
            postgres.stop();
        }
        let service_a_again = start_node(database_url, "node-a", &spool_a);
        if let Some(postgres) = outage {
            assert!(
                service_a_again
                    .wait_for_log_line(
                        |line| line.contains("cannot close interrupted call records yet"),
                        CLOSING_DEADLINE,
                    )
                    .is_some(),
                "node-a did not report the database away"
            );
            assert!(!service_a_again
                .log_lines()
                .iter()
                .any(|line| line.contains(CLOSED_LINE)));
            postgres.start_again();
        }
        assert_eq!(closed_at_start(&service_a_again, "node-a"), 2);
        assert!(
            started.elapsed() < hold,
            "the test took longer than the callers' hold: the calls may have ended by themselves"
        );
        assert!(runtime.block_on(open_rows(database_url)).is_empty());
        let metrics = metrics(http_addr(&service_a_again));
        assert!(
            metrics.contains(
                "hotline_calls_total{outcome=\"interrupted\",group=\"none\",language=\"none\"} 2\n"
            ),
            "{metrics}"
        );
        (callers.join().unwrap(), open)
    });

    let open_ids: BTreeSet<String> = open_before.into_iter().map(|(id, _)| id).collect();
    assert_eq!(open_ids, sipp_call_ids(&sipp), "{}", sipp.diagnostics());
    runtime.block_on(async {
        let store = CdrStore::connect(database_url, &dir.path().join("reader-spool.jsonl"))
            .await
            .unwrap();
        let page = Page {
            limit: 100,
            offset: 0,
        };
        let records = store.calls(&CallFilter::default(), page).await.unwrap();
        let closed: BTreeSet<String> = records
            .iter()
            .filter(|record| record.outcome == Outcome::Interrupted)
            .map(|record| record.call_id.clone())
            .collect();
        assert_eq!(closed, open_ids, "{records:#?}");
        assert_eq!(records.len(), 2, "{records:#?}");
        for record in &records {
            // The steps of a call reach the database with its end, so a killed call has none
            // there: the last time known for it is its arrival.
            assert_eq!(record.ended, record.arrived, "{record:#?}");
            let events = store.events(&record.call_id).await.unwrap();
            let trail: Vec<(u32, &str)> = events.iter().map(|e| (e.seq, e.kind.as_str())).collect();
            assert_eq!(trail, vec![(0, "interrupted")], "{events:#?}");
            assert_eq!(events[0].at, record.ended);
        }
    });
}

#[test]
fn killed_calls_are_closed_as_interrupted_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("cdr.db").display());
    killed_calls_are_closed_by_their_own_node_only(&url, None);
}

#[test]
fn killed_calls_are_closed_as_interrupted_on_postgres_even_if_it_is_down_at_restart() {
    let postgres = TestPostgres::start();
    killed_calls_are_closed_by_their_own_node_only(&postgres.url(), Some(&postgres));
}
