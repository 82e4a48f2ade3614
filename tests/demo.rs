//! `rollwave demo` end to end: 14 simulated clusters and agents, a good change in wave
//! order, a bad one halted at the canary, its revert everywhere, and (with a real
//! Prometheus installed) a release with Ready pods but 30% errors halted at the canary
//! by analysis; exit 0 only if every expectation held. Without a terminal the demo
//! prints one line per event; with `--keep` it names the binary to explore with.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

/// Runs `demo --speed 4 --keep` without a terminal; once it says the clusters keep
/// running, stops it with SIGINT as a person would with Ctrl-C. Its stdout and status.
fn demo_kept_then_interrupted() -> (String, std::process::ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rollwave"))
        .args(["demo", "--speed", "4", "--keep"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
            let Ok(line) = line else { break };
            let _ = tx.send(line == "Ctrl-C stops them.");
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    // A hang guard, not a speed limit: the demo prints a line on every change of any
    // cluster, so five silent minutes mean it hangs (its own guards are shorter).
    let mut kept = false;
    while let Ok(last) = rx.recv_timeout(Duration::from_secs(300)) {
        if last {
            kept = true;
            break;
        }
    }
    // SAFETY: kill(2) on the child this test started.
    unsafe {
        libc::kill(
            child.id() as i32,
            if kept { libc::SIGINT } else { libc::SIGKILL },
        )
    };
    let status = child.wait().unwrap();
    let stdout = reader.join().unwrap();
    // --keep leaves the demo's directory (the kubeconfig's) for exploring: remove it.
    if let Some(kubeconfig) = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("export KUBECONFIG="))
        && let Some(dir) = std::path::Path::new(kubeconfig).parent()
    {
        let _ = std::fs::remove_dir_all(dir);
    }
    assert!(
        kept,
        "the demo never said the clusters keep running:\n{stdout}"
    );
    (stdout, status, errors.join().unwrap())
}

#[test]
fn the_demo_rolls_out_halts_and_reverts_with_every_expectation_met() {
    let (stdout, status, stderr) = demo_kept_then_interrupted();
    assert!(status.success(), "{stdout}\n{stderr}");
    for line in [
        "[ok] good change reached every cluster in wave order",
        "[ok] bad change halted at the canary",
        "[ok] revert reached every cluster",
    ] {
        assert!(stdout.contains(line), "missing {line:?}:\n{stdout}");
    }
    // The analysis chapter runs when a prometheus binary is installed (./test does).
    let analysis = if rollwave::demo::prometheus::find_binary().is_some() {
        "[ok] errors change halted at the canary by analysis"
    } else {
        "[skipped] errors change halted at the canary by analysis: install prometheus"
    };
    assert!(stdout.contains(analysis), "missing {analysis:?}:\n{stdout}");
    // Without a terminal: one short line per event, the bake between waves said,
    // and the revert chapter names the release it shows.
    for line in stdout.lines() {
        assert!(
            line.len() <= 160,
            "a line of {} characters: {line}",
            line.len()
        );
    }
    for event in [
        "s good change: web 1.4.3 rolls out wave by wave\n",
        "s   wave 0  test-sh-1    web 1.4.3        Healthy\n",
        "s   wave 0 is Healthy at 1.4.3: baking 1s",
        " before wave 1 may start\n",
        "s revert: every cluster back on 1.4.3 (1.4.3-revert, the revert of broken)\n",
        "web 1.4.3-revert ",
    ] {
        assert!(stdout.contains(event), "missing {event:?}:\n{stdout}");
    }
    // The hint names this very binary, which `cargo run` does not put on PATH.
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_rollwave"))
        .canonicalize()
        .unwrap();
    let hint = format!("  {} status --repo ", exe.display());
    assert!(stdout.contains(&hint), "missing {hint:?}:\n{stdout}");
    assert!(
        stdout.contains("web view: http://127.0.0.1:"),
        "the demo serves the web view and prints its address:\n{stdout}"
    );
}

#[test]
fn the_demo_refuses_a_bad_speed() {
    let (code, _, err) = common::run_cli(&["demo", "--speed", "0"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("--speed must be a positive number, got 0"),
        "{err}"
    );
}
