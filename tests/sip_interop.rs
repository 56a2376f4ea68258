//! Interoperability with a third-party SIP implementation: SIPp places calls and sends requests
//! to a real `hotline serve` over loopback, and every test asserts SIPp's exact success and
//! failure counts. Scenarios live in `tests/sipp/`; `scripts/test` installs SIPp.

mod common;

use common::{Service, Sipp, SippStats, Transport};

/// Starts the service with `extra_env`, runs `calls` calls of `sipp` against it, and asserts
/// that every one succeeded and SIPp exited cleanly.
fn all_calls_succeed(extra_env: &[(&str, &str)], sipp: Sipp, calls: u32) {
    let service = Service::start(extra_env);
    let run = sipp.calls(calls).run(&service);
    assert_eq!(
        run.stats,
        SippStats {
            successful: u64::from(calls),
            failed: 0,
        }
    );
    assert_eq!(run.exit_code, Some(0));
}

#[test]
fn basic_calls_over_udp() {
    all_calls_succeed(&[], Sipp::new("uac_basic.xml").rate(20).limit(100), 100);
}

#[test]
fn basic_calls_over_tcp_single_connection() {
    let sipp = Sipp::new("uac_basic.xml")
        .transport(Transport::TcpSingleConnection)
        .rate(10);
    all_calls_succeed(&[], sipp, 20);
}

#[test]
fn basic_calls_over_tcp_connection_per_call() {
    let sipp = Sipp::new("uac_basic.xml")
        .transport(Transport::TcpConnectionPerCall)
        .rate(10);
    all_calls_succeed(&[], sipp, 20);
}

#[test]
fn cancel_while_ringing_gets_200_then_487() {
    // Ring long enough that every CANCEL arrives before the answer would.
    all_calls_succeed(
        &[("HOTLINE__SIP__ANSWER_DELAY", "2s")],
        Sipp::new("uac_cancel.xml").rate(10),
        10,
    );
}

#[test]
fn options_lists_allow_and_accept() {
    all_calls_succeed(&[], Sipp::new("uac_options.xml").rate(10), 10);
}

#[test]
fn g729_only_offer_is_refused_with_488_and_warning() {
    all_calls_succeed(&[], Sipp::new("uac_g729.xml").rate(10), 5);
}

#[test]
fn compact_header_forms_complete_a_call() {
    all_calls_succeed(&[], Sipp::new("uac_compact.xml").rate(10), 5);
}

#[test]
fn max_forwards_zero_gets_483() {
    all_calls_succeed(&[], Sipp::new("uac_max_forwards.xml").rate(10), 5);
}

#[test]
fn unknown_method_gets_405_with_allow() {
    all_calls_succeed(&[], Sipp::new("uac_unknown_method.xml").rate(10), 5);
}
