//! Returning callers keep their language, with the real `hotline serve` on the shipped
//! routing (heating always open, by REFER) and SIPp as the caller: the first call chooses
//! English in the language menu, the second from the same number is greeted in English and
//! goes straight to the main menu (its first `2` is heating), and so is a call after a
//! graceful restart, the choice read back from the call records in the same SQLite file.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Service, Sipp, SippStats};

const LOG_DEADLINE: Duration = Duration::from_secs(10);

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn work_dir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("language-interop")
        .join(test);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap_or_else(|error| panic!("creating {}: {error}", dir.display()));
    dir
}

/// The shipped routing.toml with heating open at all hours and handed over by REFER, so the
/// scenario `ivr_shipped_heating.xml` (keys 2 and 2, then the caller's side of the REFER)
/// works whenever the test runs.
fn shipped_with_heating_always_open_by_refer() -> String {
    let shipped = fs::read_to_string(manifest_dir().join("routing.toml")).unwrap();
    let mut in_heating = false;
    let mut lines = Vec::new();
    for line in shipped.lines() {
        if line.starts_with('[') {
            in_heating = line.trim() == "[groups.heating]";
        }
        if in_heating && line.trim_start().starts_with("hours =") {
            lines.push("transfer = \"refer\"");
            continue;
        }
        lines.push(line);
    }
    let text = lines.join("\n") + "\n";
    assert!(
        text.contains("transfer = \"refer\""),
        "routing.toml: [groups.heating] has no `hours` line"
    );
    text
}

fn wait_for_log(service: &Service, what: &str, wanted: impl Fn(&str) -> bool) -> String {
    service
        .wait_for_log_line(wanted, LOG_DEADLINE)
        .unwrap_or_else(|| panic!("the service logged no {what} within {LOG_DEADLINE:?}"))
}

/// One SIPp call pressing 2 and 2; it must end referred to heating's English speaker.
fn english_heating_call(service: &Service, calls_before: usize) {
    let run = Sipp::new("ivr_shipped_heating.xml").run(service);
    assert_eq!(
        run.stats,
        SippStats {
            successful: 1,
            failed: 0
        },
        "{}",
        run.diagnostics()
    );
    let ended = common::wait_for_count(
        service,
        "outcome=\"transferred\"",
        calls_before + 1,
        LOG_DEADLINE,
    );
    assert!(ended, "{}", service.stderr_tail());
    let referred = service
        .log_lines()
        .into_iter()
        .filter(|line| line.contains("transferring by REFER"))
        .collect::<Vec<_>>();
    assert_eq!(referred.len(), calls_before + 1, "{referred:#?}");
    assert!(
        referred
            .iter()
            .all(|line| line.contains("target=sip:heating-2@127.0.0.1:5312")),
        "the English-speaking agent every time: {referred:#?}"
    );
}

fn remembered(service: &Service) -> usize {
    service
        .log_lines()
        .iter()
        .filter(|line| line.contains("returning caller: remembered language language=en"))
        .count()
}

#[test]
fn the_second_call_from_a_number_starts_in_the_language_chosen_the_first_time() {
    let dir = work_dir("remembered");
    let routing = dir.join("routing.toml");
    fs::write(&routing, shipped_with_heating_always_open_by_refer()).unwrap();
    let database = format!("sqlite://{}", dir.join("records.db").display());
    let env = [
        ("HOTLINE__ROUTING", routing.to_str().unwrap()),
        ("HOTLINE__DATABASE__URL", database.as_str()),
    ];

    let mut service = Service::start(&env);
    english_heating_call(&service, 0);
    assert_eq!(remembered(&service), 0, "a new caller chooses");
    english_heating_call(&service, 1);
    assert_eq!(remembered(&service), 1, "{}", service.stderr_tail());
    let keys = service
        .log_lines()
        .into_iter()
        .filter(|line| line.contains("DTMF") && line.contains("digit=2"))
        .count();
    assert_eq!(keys, 4, "both calls' keys reached the service");

    service.send_signal(libc::SIGTERM);
    let status = service.wait_for_exit(Duration::from_secs(30));
    assert!(status.is_some_and(|status| status.success()), "{status:?}");

    let service = Service::start(&env);
    let read = wait_for_log(&service, "read of the remembered languages", |line| {
        line.contains("returning callers' languages read from the call records")
    });
    assert!(read.contains("callers=1"), "{read}");
    english_heating_call(&service, 0);
    assert_eq!(remembered(&service), 1, "{}", service.stderr_tail());
}
