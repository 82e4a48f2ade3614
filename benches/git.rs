//! Clone and no-op fetch of a generated fleet repository (10,000 commits, 5,000 files)
//! over `git daemon` on loopback: rollwave's mirror side by side with the `git` CLI in
//! the same run. Time, bytes received and peak RSS (each clone runs in its own
//! process, measured with wait4).
//!
//! `cargo bench --bench git`

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rollwave::source::{Auth, Mirror};

const FILES: usize = 5_000;
const COMMITS: usize = 10_000;

fn generate(repo: &Path) {
    std::fs::create_dir_all(repo).unwrap();
    assert!(
        Command::new("git")
            .args(["init", "-q", "--bare", "-b", "main"])
            .arg(repo)
            .status()
            .unwrap()
            .success()
    );
    let mut fi = Command::new("git")
        .args(["fast-import", "--quiet"])
        .current_dir(repo)
        .env("GIT_DIR", repo)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut w = std::io::BufWriter::new(fi.stdin.take().unwrap());
    let mut mark = 0;
    for c in 0..COMMITS {
        writeln!(w, "commit refs/heads/main").unwrap();
        mark += 1;
        writeln!(w, "mark :{mark}").unwrap();
        writeln!(
            w,
            "committer Bench <bench@example.com> {} +0000",
            1_700_000_000 + c
        )
        .unwrap();
        let msg = format!("commit {c}");
        writeln!(w, "data {}\n{msg}", msg.len()).unwrap();
        if c > 0 {
            writeln!(w, "from :{}", mark - 1).unwrap();
        }
        let files: Vec<usize> = if c == 0 {
            (0..FILES).collect()
        } else {
            vec![c % FILES]
        };
        for f in files {
            let content = format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{f}\ndata:\n  version: \"{c}\"\n"
            );
            writeln!(w, "M 100644 inline apps/app{:02}/base/cm-{f}.yaml", f % 20).unwrap();
            writeln!(w, "data {}\n{content}", content.len()).unwrap();
        }
    }
    drop(w);
    assert!(fi.wait().unwrap().success());
}

struct Measured {
    wall: Duration,
    rss_kib: i64,
}

#[allow(clippy::zombie_processes)] // reaped by wait4 below
fn measure(cmd: &mut Command) -> Measured {
    let start = Instant::now();
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the pid is our child; the out-pointers are valid.
    let r = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(r, child.id() as i32);
    Measured {
        wall: start.elapsed(),
        rss_kib: usage.ru_maxrss,
    }
}

fn dir_size(p: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(p).unwrap().flatten() {
        let m = e.metadata().unwrap();
        total += if m.is_dir() {
            dir_size(&e.path())
        } else {
            m.len()
        };
    }
    total
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // Child mode: one rollwave clone, measured by the parent.
    if args.get(1).map(String::as_str) == Some("clone-child") {
        let m = Mirror::open(Path::new(&args[3]), &args[2], "main", Auth::None).unwrap();
        let out = m.fetch().unwrap();
        println!("{} {}", out.received_objects, out.received_bytes);
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let srv = tmp.path().join("srv");
    let start = Instant::now();
    generate(&srv.join("fleet.git"));
    println!(
        "generated {COMMITS} commits x {FILES} files in {:.1}s",
        start.elapsed().as_secs_f64()
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let exec = Command::new("git").arg("--exec-path").output().unwrap();
    let daemon_bin =
        std::path::PathBuf::from(String::from_utf8_lossy(&exec.stdout).trim()).join("git-daemon");
    let mut daemon = Command::new(daemon_bin)
        .args([
            "--reuseaddr",
            "--export-all",
            "--listen=127.0.0.1",
            &format!("--port={port}"),
        ])
        .arg(format!("--base-path={}", srv.display()))
        .arg(&srv)
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let url = format!("git://127.0.0.1:{port}/fleet.git");

    let ours = measure(
        Command::new(std::env::current_exe().unwrap())
            .args(["clone-child", &url])
            .arg(tmp.path().join("ours")),
    );
    let theirs = measure(
        Command::new("git")
            .args([
                "clone",
                "-q",
                "--bare",
                "--single-branch",
                "--branch",
                "main",
                &url,
            ])
            .arg(tmp.path().join("theirs.git")),
    );
    let ours_size = dir_size(&tmp.path().join("ours"));
    let theirs_size = dir_size(&tmp.path().join("theirs.git"));
    println!(
        "clone     rollwave {:>8.0} ms {:>6.1} MiB RSS {:>6.1} MiB on disk | git {:>8.0} ms {:>6.1} MiB RSS {:>6.1} MiB on disk | ratio {:.2}x",
        ours.wall.as_secs_f64() * 1e3,
        ours.rss_kib as f64 / 1024.0,
        ours_size as f64 / 1048576.0,
        theirs.wall.as_secs_f64() * 1e3,
        theirs.rss_kib as f64 / 1024.0,
        theirs_size as f64 / 1048576.0,
        ours.wall.as_secs_f64() / theirs.wall.as_secs_f64()
    );

    // No-op fetches: rollwave in process (median of 21), git as a process each time.
    let mirror = Mirror::open(&tmp.path().join("ours"), &url, "main", Auth::None).unwrap();
    let mut times: Vec<Duration> = (0..21)
        .map(|_| {
            let s = Instant::now();
            let out = mirror.fetch().unwrap();
            assert_eq!(out.received_objects, 0);
            s.elapsed()
        })
        .collect();
    times.sort();
    let mut git_times: Vec<Duration> = (0..21)
        .map(|_| {
            measure(
                Command::new("git")
                    .args(["--git-dir"])
                    .arg(tmp.path().join("theirs.git"))
                    .args(["fetch", "-q", "origin", "+refs/heads/main:refs/heads/main"]),
            )
            .wall
        })
        .collect();
    git_times.sort();
    println!(
        "no-op fetch rollwave {:>6.1} ms (median of 21) | git {:>6.1} ms",
        times[10].as_secs_f64() * 1e3,
        git_times[10].as_secs_f64() * 1e3
    );
    let _ = daemon.kill();
    let _ = daemon.wait();
}
