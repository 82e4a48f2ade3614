//! A real Prometheus (the `prometheus` binary, Debian's package) scraping the
//! simulated clusters' traffic (`/sim/metrics`), with a `cluster` label per target: what
//! the demo and the analysis tests query. The process is killed when the value is
//! dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::DemoError;

use crate::plan::analysis::Measurement;
use crate::prometheus::{Prometheus, PrometheusAuth, PrometheusConfig};

/// The `prometheus` binary on `PATH`, if installed.
pub fn find_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("prometheus"))
        .find(|p| p.is_file())
}

/// A running Prometheus scraping simulated clusters.
pub struct ScrapingPrometheus {
    child: Option<Child>,
    addr: SocketAddr,
    targets: usize,
}

/// The scrape configuration: one job over every `(cluster, address)` target.
fn scrape_config(targets: &[(String, SocketAddr)], interval: Duration) -> String {
    let secs = interval.as_secs().max(1);
    let mut out = format!(
        "global:\n  scrape_interval: {secs}s\n  evaluation_interval: {secs}s\nscrape_configs:\n- job_name: rollwave-sim\n  metrics_path: /sim/metrics\n  static_configs:\n"
    );
    for (cluster, addr) in targets {
        out.push_str(&format!(
            "  - targets: ['{addr}']\n    labels: {{cluster: '{cluster}'}}\n"
        ));
    }
    out
}

impl ScrapingPrometheus {
    /// Starts `binary` in `dir` (configuration and data), scraping `targets` every
    /// `interval`, and waits until it is ready.
    pub fn start(
        binary: &Path,
        dir: &Path,
        targets: &[(String, SocketAddr)],
        interval: Duration,
    ) -> Result<ScrapingPrometheus, DemoError> {
        std::fs::create_dir_all(dir)?;
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, scrape_config(targets, interval))?;
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            l.local_addr()?
        };
        let log = std::fs::File::create(dir.join("prometheus.log"))?;
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--storage.tsdb.retention.time=1h")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| DemoError::Setup(format!("cannot start {}: {e}", binary.display())))?;
        let mut p = ScrapingPrometheus {
            child: Some(child),
            addr,
            targets: targets.len(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !p.ready() {
            if let Some(c) = p.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                let log = std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                return Err(DemoError::Setup(format!(
                    "prometheus exited ({status}): {}",
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                )));
            }
            if Instant::now() > deadline {
                return Err(DemoError::Setup(format!(
                    "prometheus at {addr} not ready within 30 s"
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(p)
    }

    fn ready(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect_timeout(&self.addr, Duration::from_secs(1))
        else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if s.write_all(b"GET /-/ready HTTP/1.0\r\nHost: prometheus\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut head = [0u8; 12];
        s.read_exact(&mut head).is_ok() && head.ends_with(b"200")
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The agent config's view of it.
    pub fn config(&self) -> PrometheusConfig {
        PrometheusConfig {
            url: self.url(),
            auth: PrometheusAuth::None,
            timeout: Duration::from_secs(2),
            ca_file: None,
            insecure_skip_verify: false,
        }
    }

    /// Waits until every target has been scraped successfully.
    pub async fn wait_for_targets(&self, limit: Duration) -> Result<(), DemoError> {
        let client = Prometheus::new(&self.config())?;
        let deadline = Instant::now() + limit;
        loop {
            let m = client.measure("count(up{job=\"rollwave-sim\"} == 1)").await;
            if m == Measurement::Value(self.targets as f64) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(DemoError::Setup(format!(
                    "prometheus has not scraped every simulated cluster within {limit:?} (last: {m:?})"
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops it (as a crash would: no more answers).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for ScrapingPrometheus {
    fn drop(&mut self) {
        self.stop();
    }
}
