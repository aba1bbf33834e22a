//! The Autobahn|Testsuite (`wstest -m fuzzingclient`, autobahntestsuite 25.10.1 on
//! CPython 2.7, installed by tests/run-all.sh into target/autobahn) against the
//! Flask-Sock echo (tests/apps/ws_echo.py) behind ferricorn, over HTTP/1.1, and
//! against the ASGI echo (tests/apps/asgi_ws.py, framed by the worker's Rust).
//!
//! Cases: sections 1-7 (framing, pings/pongs, reserved bits, opcodes, fragmentation,
//! UTF-8, close handling), 9 (limits: messages up to 16 MiB, many small frames) and
//! 10 (auto-fragmentation). Not run: 12 and 13 (permessage-deflate: the app's
//! library compresses, the relay only carries bytes, and they are hundreds of slow
//! cases). A case passes as Autobahn grades it: behaviour OK, NON-STRICT or
//! INFORMATIONAL, and a close OK or INFORMATIONAL. simple-websocket answers pings
//! from its reader thread while the app thread echoes, so the cases with a ping
//! between fragments race Autobahn's expected order (5.6, 5.7, 5.19, 5.20 seen, one
//! or two a run; the same under gunicorn 27 gthread): a case not clean
//! is run again, alone, up to twice; one that never passes fails the test.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

const SECTIONS: &[&str] = &[
    "1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*",
];

/// The CPython 2.7 and the directory tests/run-all.sh installed wstest with.
fn wstest() -> (String, String) {
    let dir = repo().join("target/autobahn");
    let python = std::fs::read_to_string(dir.join(".python")).unwrap_or_else(|_| {
        panic!(
            "Autobahn|Testsuite is missing in {}: run `bash tests/run-all.sh` (it installs it \
             with a CPython 2.7: set PYTHON2 if none is found)",
            dir.display()
        )
    });
    (python.trim().to_string(), dir.to_str().unwrap().to_string())
}

/// Runs the fuzzing client on `cases`; returns case -> (behaviour, close).
fn fuzz(server: &Server, cases: &[String], out: &Path) -> BTreeMap<String, (String, String)> {
    let (python, site) = wstest();
    let report = out.join("report");
    let spec = serde_json::json!({
        "outdir": report,
        "servers": [{"agent": "ferricorn", "url": format!("ws://{}/echo", server.addr)}],
        "cases": cases,
        "exclude-cases": [],
        "exclude-agent-cases": {},
    });
    let spec_path = out.join("spec.json");
    std::fs::write(&spec_path, spec.to_string()).unwrap();
    let log = std::fs::File::create(out.join("wstest.log")).unwrap();
    let status = Command::new(&python)
        .arg("-c")
        .arg(format!(
            "import site, sys; site.addsitedir({site:?}); \
             sys.argv = ['wstest', '-m', 'fuzzingclient', '-s', {:?}]; \
             from autobahntestsuite.wstest import run; run()",
            spec_path.to_str().unwrap()
        ))
        .current_dir(out)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .status()
        .expect("run wstest");
    let index = std::fs::read_to_string(report.join("index.json")).unwrap_or_else(|e| {
        let log = std::fs::read_to_string(out.join("wstest.log")).unwrap_or_default();
        server.fail(&format!("wstest ({status}) wrote no report: {e}\n{log}"))
    });
    let index: serde_json::Value = serde_json::from_str(&index).unwrap();
    index["ferricorn"]
        .as_object()
        .expect("the agent's results")
        .iter()
        .map(|(case, r)| {
            let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
            (case.clone(), (s("behavior"), s("behaviorClose")))
        })
        .collect()
}

fn passes((behaviour, close): &(String, String)) -> bool {
    ["OK", "NON-STRICT", "INFORMATIONAL"].contains(&behaviour.as_str())
        && ["OK", "INFORMATIONAL"].contains(&close.as_str())
}

#[test]
fn autobahn_fuzzingclient_against_the_flask_ws_echo() {
    let server = test_app("ws_echo:app", &["-w", "1", "--threads", "16"]).start();
    fuzz_all(&server, 2);
}

/// The same cases against tests/apps/asgi_ws.py's echo under the ASGI worker, whose
/// framing is ferricorn's own (worker/src/asgi/websocket): every case must pass the
/// first time (no library thread races the echo there).
#[test]
fn autobahn_fuzzingclient_against_the_asgi_echo() {
    let server = test_app("asgi_ws:app", &["-k", "asgi", "-w", "1"]).start();
    fuzz_all(&server, 0);
}

/// Runs every section on `server`; a case not clean is run again, alone, up to
/// `again` times; one that never passes fails the test.
fn fuzz_all(server: &Server, again: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let all: Vec<String> = SECTIONS.iter().map(|s| s.to_string()).collect();
    let results = fuzz(server, &all, tmp.path());
    assert!(results.len() > 290, "only {} cases ran", results.len());
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    for (b, c) in results.values() {
        *tally.entry(format!("{b}/{c}")).or_default() += 1;
    }
    println!("Autobahn: {} cases: {tally:?}", results.len());
    let mut failing: Vec<String> = results
        .iter()
        .filter(|(_, r)| !passes(r))
        .map(|(k, _)| k.clone())
        .collect();
    for round in 1..=again {
        if failing.is_empty() {
            break;
        }
        println!("Autobahn: run again (round {round}): {failing:?}");
        let dir = tmp.path().join(format!("again{round}"));
        std::fs::create_dir_all(&dir).unwrap();
        let rerun = fuzz(server, &failing, &dir);
        failing.retain(|case| !rerun.get(case).is_some_and(passes));
    }
    if !failing.is_empty() {
        let detail: Vec<String> = failing
            .iter()
            .map(|c| format!("{c} {:?}", results[c]))
            .collect();
        server.fail(&format!(
            "Autobahn cases failing {} time(s): {detail:?} (reports in {})",
            again + 1,
            tmp.keep().display()
        ));
    }
}
