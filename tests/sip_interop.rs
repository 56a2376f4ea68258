//! Interoperability with a third-party SIP implementation: SIPp places calls and sends requests
//! to a real `hotline serve` over loopback, and every test asserts SIPp's exact success and
//! failure counts. Scenarios live in `tests/sipp/`; `scripts/test` installs SIPp.

mod common;

use common::{Service, Sipp, SippStats, Transport};

fn all_succeeded(calls: u64) -> SippStats {
    SippStats {
        successful: calls,
        failed: 0,
    }
}

#[test]
fn basic_calls_over_udp() {
    let service = Service::start(&[]);
    let run = Sipp::new("uac_basic.xml")
        .calls(100)
        .rate(20)
        .limit(100)
        .run(&service);
    assert_eq!(run.stats, all_succeeded(100));
    assert_eq!(run.exit_code, Some(0));
}

#[test]
fn basic_calls_over_tcp_single_connection() {
    let service = Service::start(&[]);
    let run = Sipp::new("uac_basic.xml")
        .transport(Transport::TcpSingleConnection)
        .calls(20)
        .rate(10)
        .run(&service);
    assert_eq!(run.stats, all_succeeded(20));
    assert_eq!(run.exit_code, Some(0));
}

#[test]
fn basic_calls_over_tcp_connection_per_call() {
    let service = Service::start(&[]);
    let run = Sipp::new("uac_basic.xml")
        .transport(Transport::TcpConnectionPerCall)
        .calls(20)
        .rate(10)
        .run(&service);
    assert_eq!(run.stats, all_succeeded(20));
    assert_eq!(run.exit_code, Some(0));
}

#[test]
fn cancel_while_ringing_gets_200_then_487() {
    // Ring long enough that every CANCEL arrives before the answer would.
    let service = Service::start(&[("HOTLINE__SIP__ANSWER_DELAY", "2s")]);
    let run = Sipp::new("uac_cancel.xml").calls(10).rate(10).run(&service);
    assert_eq!(run.stats, all_succeeded(10));
    assert_eq!(run.exit_code, Some(0));
}

#[test]
fn options_lists_allow_and_accept() {
    let service = Service::start(&[]);
    let run = Sipp::new("uac_options.xml")
        .calls(10)
        .rate(10)
        .run(&service);
    assert_eq!(run.stats, all_succeeded(10));
    assert_eq!(run.exit_code, Some(0));
}

#[test]
fn g729_only_offer_is_refused_with_488_and_warning() {
    let service = Service::start(&[]);
    let run = Sipp::new("uac_g729.xml").calls(5).rate(10).run(&service);
    assert_eq!(run.stats, all_succeeded(5));
    assert_eq!(run.exit_code, Some(0));
}

#[test]
fn compact_header_forms_complete_a_call() {
    let service = Service::start(&[]);
    let run = Sipp::new("uac_compact.xml").calls(5).rate(10).run(&service);
    assert_eq!(run.stats, all_succeeded(5));
    assert_eq!(run.exit_code, Some(0));
}

#[test]
fn max_forwards_zero_gets_483() {
    let service = Service::start(&[]);
    let run = Sipp::new("uac_max_forwards.xml")
        .calls(5)
        .rate(10)
        .run(&service);
    assert_eq!(run.stats, all_succeeded(5));
    assert_eq!(run.exit_code, Some(0));
}

#[test]
fn unknown_method_gets_405_with_allow() {
    let service = Service::start(&[]);
    let run = Sipp::new("uac_unknown_method.xml")
        .calls(5)
        .rate(10)
        .run(&service);
    assert_eq!(run.stats, all_succeeded(5));
    assert_eq!(run.exit_code, Some(0));
}
