//! API servers that misbehave, for tests of the agent's bounds: one that accepts
//! connections and never answers, one that answers every request with the same
//! status. Each listens on a free port of 127.0.0.1, writes a kubeconfig for itself,
//! and stops (closing every connection) when dropped.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the fake server treats a request.
#[derive(Debug, Clone, Copy)]
pub enum Behaviour {
    /// Reads what is sent and never answers.
    Hang,
    /// Answers every request with this HTTP status and a Kubernetes `Status` body.
    Answer(u16),
}

/// A misbehaving API server.
pub struct FakeApi {
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicUsize>,
    held: Arc<Mutex<Vec<TcpStream>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeApi {
    /// Starts a server named `cluster` in its kubeconfig.
    pub fn start(cluster: &str, behaviour: Behaviour) -> FakeApi {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        rollwave::sim::write_kubeconfig(
            &kubeconfig,
            &[(cluster.to_string(), format!("http://127.0.0.1:{port}"))],
        )
        .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicUsize::new(0));
        let held = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, requests, held) = (stop.clone(), requests.clone(), held.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((s, _)) => {
                            s.set_nonblocking(false).unwrap();
                            held.lock().unwrap().push(s.try_clone().unwrap());
                            let (stop, requests) = (stop.clone(), requests.clone());
                            std::thread::spawn(move || serve(s, behaviour, &stop, &requests));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        FakeApi {
            port,
            dir,
            kubeconfig,
            stop,
            requests,
            held,
            thread: Some(thread),
        }
    }

    /// Requests received so far (their headers complete).
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for s in self.held.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves one connection: reads requests (headers, then a Content-Length body) and
/// answers each as `behaviour` says.
fn serve(mut s: TcpStream, behaviour: Behaviour, stop: &AtomicBool, requests: &AtomicUsize) {
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut pending = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    while !stop.load(Ordering::Relaxed) {
        let n = match s.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(_) => return,
        };
        pending.extend_from_slice(&buf[..n]);
        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&pending[..end]).to_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if pending.len() < end + 4 + length {
                break;
            }
            pending.drain(..end + 4 + length);
            requests.fetch_add(1, Ordering::Relaxed);
            if let Behaviour::Answer(code) = behaviour {
                let body = format!(
                    r#"{{"kind":"Status","apiVersion":"v1","metadata":{{}},"status":"Failure","message":"the server is answering {code} to everything","reason":"TooManyRequests","code":{code}}}"#
                );
                let reply = format!(
                    "HTTP/1.1 {code} Fake\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                if s.write_all(reply.as_bytes()).is_err() {
                    return;
                }
            }
        }
    }
}
