//! `rollwave sim`: starts simulated clusters on loopback and writes a kubeconfig with
//! one context per cluster once every one of them answers.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::sim::{Faults, SimCluster, SimOptions, write_kubeconfig};

/// The command line of `rollwave sim`, turned into cluster options in one place.
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Number of clusters, named sim-1 ... sim-N.
    #[arg(long, conflicts_with = "fleet", required_unless_present = "fleet")]
    pub clusters: Option<usize>,
    /// A fleet repository: one cluster per file in its clusters/ directory, named
    /// after it.
    #[arg(long)]
    pub fleet: Option<String>,
    /// Where to write the kubeconfig (printed to stdout when omitted).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// How long workloads take to become ready after a change.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub ready_after: Duration,
    /// Fraction of API requests answered 500/503.
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Fraction of API requests answered 429 with Retry-After.
    #[arg(long, default_value_t = 0.0)]
    pub throttle_rate: f64,
    /// Fraction of API requests whose connection is cut mid-response.
    #[arg(long, default_value_t = 0.0)]
    pub drop_rate: f64,
    /// Latency added to every API request.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub latency: Duration,
    /// Address to listen on (each cluster gets its own free port).
    #[arg(long, default_value = "127.0.0.1")]
    pub address: std::net::IpAddr,
}

fn cluster_names(args: &SimArgs) -> anyhow::Result<Vec<String>> {
    if let Some(n) = args.clusters {
        if n == 0 || n > 1000 {
            bail!("--clusters must be between 1 and 1000, got {n}");
        }
        return Ok((1..=n).map(|i| format!("sim-{i}")).collect());
    }
    let repo = args.fleet.as_deref().unwrap_or(".");
    let opened = crate::source::repo::open_tree(repo, None, None, "main")?;
    let fleet = crate::fleet::load(opened.tree.as_ref())
        .with_context(|| format!("{repo}: cannot read the fleet"))?;
    let names: Vec<String> = fleet.clusters.iter().map(|c| c.name.clone()).collect();
    if names.is_empty() {
        bail!("{repo}: the fleet has no clusters (add files under clusters/)");
    }
    Ok(names)
}

/// Runs until Ctrl-C or SIGTERM.
pub fn run(args: &SimArgs) -> anyhow::Result<ExitCode> {
    let faults = Faults {
        error_rate: args.error_rate,
        throttle_rate: args.throttle_rate,
        retry_after_seconds: 1,
        drop_rate: args.drop_rate,
        latency_ms: args.latency.as_millis() as u64,
        writes_only: false,
    };
    faults.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    let names = cluster_names(args)?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        // Installed before the kubeconfig appears: a SIGTERM right after must stop us
        // cleanly, not kill the process.
        let stop = crate::signals::wait_for_signal();
        let mut clusters = Vec::new();
        for name in &names {
            let mut opts = SimOptions::named(name);
            opts.listen = std::net::SocketAddr::new(args.address, 0);
            opts.ready_after = args.ready_after;
            opts.faults = faults.clone();
            clusters.push(SimCluster::start(opts).await?);
        }
        wait_ready(&clusters).await?;
        let entries: Vec<(String, String)> = clusters
            .iter()
            .map(|c| (c.name().to_string(), c.base_url()))
            .collect();
        match &args.kubeconfig {
            Some(path) => {
                write_kubeconfig(path, &entries)?;
                eprintln!(
                    "{} simulated cluster(s) ready; kubeconfig written to {}",
                    entries.len(),
                    path.display()
                );
            }
            None => print!("{}", crate::sim::kubeconfig(&entries)),
        }
        for (name, url) in &entries {
            eprintln!("  {name}: {url} (stats at {url}/sim/stats, traffic for Prometheus at {url}/sim/metrics)");
        }
        stop.await;
        eprintln!("stopping {} simulated cluster(s)", clusters.len());
        if let Some(path) = &args.kubeconfig {
            remove_if_ours(path);
        }
        for c in clusters {
            c.shutdown().await;
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Every cluster answers `/version` before the kubeconfig appears.
async fn wait_ready(clusters: &[SimCluster]) -> anyhow::Result<()> {
    for c in clusters {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let ok = tokio::net::TcpStream::connect(c.addr()).await.is_ok();
            if ok {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                bail!("simulated cluster {} did not accept connections", c.name());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(())
}

/// The kubeconfig points at ports that are about to close; remove it so nobody uses
/// a stale one.
fn remove_if_ours(path: &Path) {
    if let Ok(text) = std::fs::read_to_string(path)
        && text.contains("kind: Config")
    {
        let _ = std::fs::remove_file(path);
    }
}
