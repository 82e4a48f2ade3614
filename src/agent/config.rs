//! `agent.yaml`: what one agent process watches and manages. Parsing is pure (text in,
//! validated [`AgentConfig`] out) and every mistake is reported with the file, line
//! and field, at start-up, before the agent touches a cluster.
//!
//! ```yaml
//! repo:
//!   url: https://git.example.com/platform/fleet.git   # or a local path (watched)
//!   branch: main
//!   path: deploy/fleet   # the fleet's directory, when the repository holds more
//!   auth:
//!     token: {env: ROLLWAVE_GIT_TOKEN}                 # or basic:, ssh:
//! interval: 30s          # poll interval (webhook and file watch wake it earlier)
//! heartbeat: 60s         # status written at least this often
//! pushStatus: true       # false: a read-only agent (fleet policy `gate: time`)
//! listen: 0.0.0.0:9090   # /metrics, /healthz, /readyz, POST /hooks/git
//! webhook:
//!   github: {env: ROLLWAVE_WEBHOOK_SECRET}
//! log: {format: json, level: info}
//! stuckAfter: 10m        # a pass running longer fails /healthz (the pod is restarted)
//! apply:                # requests to each cluster: in flight at once, per second, burst
//!   concurrency: 32
//!   qps: 500
//!   burst: 1000
//! prometheus:           # for the analysis of bakes (rollout.analysis in the fleet)
//!   url: http://prometheus.monitoring:9090
//!   auth: {bearer: {file: /etc/rollwave/prometheus/token}}   # or basic: {username, password}
//!   timeout: 10s         # each attempt of a query (3 attempts)
//!   tls: {caFile: /etc/rollwave/prometheus/ca.pem}
//! notify:               # events of this agent's clusters (see crate::agent::notify)
//!   - url: https://hooks.example.com/rollwave
//!     secret: {env: ROLLWAVE_NOTIFY_SECRET}   # X-Rollwave-Signature: sha256=<HMAC>
//!   - urlFrom: {file: /etc/rollwave/slack-url}   # a URL holding a token is a secret
//!     format: slack
//!     events: [Degraded, RolledBack, Halted]
//! hub:                  # the status hub, when fleet.yaml says status: {store: kubernetes}
//!   kubeconfig: /etc/rollwave/hub/kubeconfig   # or inCluster: true
//!   context: hub
//!   namespace: rollwave-status                 # the default
//! clusters:
//!   - name: prod-bj-1
//!     inCluster: true
//!     # prometheus: {...}  # this cluster's own, instead of the agent's
//! ```
//!
//! Secrets are never written in the file itself: `{env: NAME}` or `{file: PATH}`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::fleet::parse_duration;
use crate::prometheus::{PrometheusAuth, PrometheusConfig};
use crate::source::trigger::WebhookSecrets;
use crate::source::{Auth, Secret};
use crate::yaml::YamlError;

/// Why an agent config is not usable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read the agent config: {message}")]
    Read {
        /// The file.
        file: String,
        /// Why.
        message: String,
    },
    /// Not YAML of the right shape (unknown field, wrong type).
    #[error(transparent)]
    Parse(#[from] YamlError),
    /// Parsed, but a value is wrong.
    #[error("{file}{}: field '{field}': {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        /// The file.
        file: String,
        /// The line, when known.
        line: Option<u64>,
        /// The field.
        field: String,
        /// What is wrong and what to do.
        message: String,
    },
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// How the agent reaches one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    /// A kubeconfig file and context (`None`: `$KUBECONFIG`/`~/.kube/config`, current
    /// context), or in-cluster when neither is set and no kubeconfig exists.
    Kubeconfig {
        /// The file.
        path: Option<PathBuf>,
        /// The context.
        context: Option<String>,
    },
    /// The pod's service account.
    InCluster,
}

/// The status hub (`hub:`): where statuses live when the fleet's `status.store` is
/// `kubernetes` (DESIGN §5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubConfig {
    /// How to reach it.
    pub connection: Connection,
    /// The namespace of the status objects.
    pub namespace: String,
}

/// One cluster the agent manages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Its name in clusters/.
    pub name: String,
    /// How to reach it.
    pub connection: Connection,
    /// Its own Prometheus, instead of the agent's.
    pub prometheus: Option<PrometheusConfig>,
}

/// Commit signature checking: only a tip signed by one of these keys is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyConfig {
    /// An SSH allowed-signers file (as `gpg.ssh.allowedSignersFile`).
    pub allowed_signers: Option<PathBuf>,
    /// An armored OpenPGP keyring.
    pub openpgp_keyring: Option<PathBuf>,
}

/// A secret named in the config, with where it was named (for errors when reading it).
#[derive(Debug, Clone)]
pub struct SecretAt {
    /// Where the value is.
    pub secret: Secret,
    /// The config file.
    pub file: String,
    /// The line it was named on.
    pub line: u64,
    /// The field (`webhook.github`).
    pub field: String,
}

impl SecretAt {
    fn read(&self) -> Result<String, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            file: self.file.clone(),
            line: (self.line > 0).then_some(self.line),
            field: self.field.clone(),
            message,
        };
        // The field names what the secret is for (not only Git credentials).
        let value = self.secret.read().map_err(|e| match e {
            crate::source::SourceError::Auth(m) => invalid(m),
            e => invalid(e.to_string()),
        })?;
        if value.trim().is_empty() {
            // Anyone can sign a request with an empty key.
            let from = match &self.secret {
                Secret::Env(v) => format!("environment variable {v}"),
                Secret::File(p) => format!("file {}", p.display()),
                Secret::Value(_) => "the value".to_string(),
            };
            return Err(invalid(format!(
                "the secret is empty ({from}); set it to a long random value, e.g. `openssl rand -hex 32`"
            )));
        }
        Ok(value)
    }
}

/// The webhook's secrets, by Git host.
#[derive(Debug, Clone, Default)]
pub struct WebhookConfig {
    /// GitHub's `X-Hub-Signature-256` secret.
    pub github: Option<SecretAt>,
    /// GitLab's `X-Gitlab-Token`.
    pub gitlab: Option<SecretAt>,
}

impl WebhookConfig {
    /// Whether the webhook is on.
    pub fn enabled(&self) -> bool {
        self.github.is_some() || self.gitlab.is_some()
    }
}

/// A validated agent configuration; every field has its default filled in.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The fleet repository: a URL or a local path.
    pub repo: String,
    /// The fleet's directory inside the repository (`repo.path`; a monorepo), if not
    /// its root.
    pub repo_path: Option<String>,
    /// The branch followed for URLs.
    pub branch: String,
    /// A fixed revision to apply as it is (no rollout planning), mostly for debugging.
    pub rev: Option<String>,
    /// Git credentials.
    pub auth: Auth,
    /// Where remote repositories are mirrored (default: the user cache directory).
    pub cache_dir: Option<PathBuf>,
    /// Keys a branch tip must be signed with (none: signatures are not checked).
    pub verify: Option<VerifyConfig>,
    /// Poll interval.
    pub interval: Duration,
    /// Shortest time between drift-triggered passes.
    pub drift_interval: Duration,
    /// Status written at least this often.
    pub heartbeat: Duration,
    /// Whether the status ref is pushed (false: read-only agent).
    pub push_status: bool,
    /// Namespace of the inventories.
    pub namespace: String,
    /// Where to serve /metrics, /healthz, /readyz and the webhook: one listener, on
    /// which slow clients cannot keep the probes from being answered
    /// ([`crate::agent::listener`]).
    pub listen: SocketAddr,
    /// Where the webhook secrets are; the webhook route exists only when one is set.
    /// Read them with [`AgentConfig::webhook_secrets`].
    pub webhook: WebhookConfig,
    /// Log format.
    pub log_format: LogFormat,
    /// Tracing directives (`info`, `rollwave=debug`).
    pub log_level: String,
    /// A pass running longer than this fails `/healthz`, so Kubernetes restarts a
    /// wedged agent.
    pub stuck_after: Duration,
    /// The `helm` binary that renders apps deployed from Helm charts (default: `helm`
    /// on PATH).
    pub helm: Option<PathBuf>,
    /// The Prometheus the analysis of bakes queries, for clusters without their own.
    pub prometheus: Option<PrometheusConfig>,
    /// The clusters, in order.
    pub clusters: Vec<ClusterConfig>,
    /// Where events are sent (`notify:`); empty: none.
    pub notify: Vec<NotifyConfig>,
    /// The status hub, for fleets whose statuses live on a cluster.
    pub hub: Option<HubConfig>,
    /// The time passes decide by: the system's (the default; never set from the
    /// file), or one a test moves to show windows open and close.
    pub clock: crate::agent::clock::Clock,
    /// How hard the agent may press each cluster (`apply:`).
    pub apply: crate::apply::limit::Limits,
}

/// A URL that may hold a token (a Slack incoming webhook's does): written in the
/// file, or read like a secret.
#[derive(Debug, Clone)]
pub enum UrlAt {
    /// Written in the config.
    Plain(String),
    /// `urlFrom: {env: NAME}` or `{file: PATH}`.
    Secret(SecretAt),
}

/// One `notify:` entry, its secrets located but not read.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// Where to POST.
    pub url: UrlAt,
    /// The body's shape.
    pub format: crate::agent::notify::Format,
    /// The HMAC key, when the body is signed.
    pub secret: Option<SecretAt>,
    /// The events sent there.
    pub events: std::collections::BTreeSet<crate::agent::notify::EventKind>,
}

/// The default of [`AgentConfig::stuck_after`]: every API call gives up within a
/// minute, so a pass of a few hundred apps that still runs after ten minutes is not
/// waiting on a cluster but wedged.
const STUCK_AFTER: Duration = Duration::from_secs(600);

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            repo: String::new(),
            repo_path: None,
            branch: "main".into(),
            rev: None,
            auth: Auth::None,
            cache_dir: None,
            verify: None,
            interval: Duration::from_secs(30),
            drift_interval: Duration::from_secs(1),
            heartbeat: Duration::from_secs(60),
            push_status: true,
            namespace: crate::apply::DEFAULT_NAMESPACE.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            webhook: WebhookConfig::default(),
            log_format: LogFormat::Text,
            log_level: "info".into(),
            stuck_after: STUCK_AFTER,
            helm: None,
            prometheus: None,
            clusters: Vec::new(),
            notify: Vec::new(),
            hub: None,
            clock: crate::agent::clock::Clock::default(),
            apply: crate::apply::limit::Limits::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretFile {
    #[serde(default)]
    env: Option<String>,
    #[serde(default)]
    file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BasicFile {
    username: String,
    password: Spanned<SecretFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SshFile {
    #[serde(default)]
    username: Option<String>,
    private_key: PathBuf,
    #[serde(default)]
    known_hosts: Option<PathBuf>,
    #[serde(default)]
    passphrase: Option<Spanned<SecretFile>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthFile {
    #[serde(default)]
    token: Option<Spanned<SecretFile>>,
    #[serde(default)]
    basic: Option<BasicFile>,
    #[serde(default)]
    ssh: Option<SshFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct VerifyFile {
    #[serde(default)]
    allowed_signers: Option<PathBuf>,
    #[serde(default)]
    openpgp_keyring: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RepoFile {
    url: Spanned<String>,
    #[serde(default)]
    verify: Option<Spanned<VerifyFile>>,
    #[serde(default)]
    branch: Option<String>,
    #[serde(default)]
    path: Option<Spanned<String>>,
    #[serde(default)]
    auth: Option<Spanned<AuthFile>>,
    #[serde(default)]
    cache_dir: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookFile {
    #[serde(default)]
    github: Option<Spanned<SecretFile>>,
    #[serde(default)]
    gitlab: Option<Spanned<SecretFile>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplyFile {
    #[serde(default)]
    concurrency: Option<Spanned<u64>>,
    #[serde(default)]
    qps: Option<Spanned<f64>>,
    #[serde(default)]
    burst: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogFile {
    #[serde(default)]
    format: Option<LogFormat>,
    #[serde(default)]
    level: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrometheusAuthFile {
    #[serde(default)]
    bearer: Option<Spanned<SecretFile>>,
    #[serde(default)]
    basic: Option<BasicFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TlsFile {
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    insecure_skip_verify: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrometheusFile {
    url: Spanned<String>,
    #[serde(default)]
    auth: Option<Spanned<PrometheusAuthFile>>,
    #[serde(default)]
    timeout: Option<Spanned<String>>,
    #[serde(default)]
    tls: Option<TlsFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ClusterFile {
    #[serde(default)]
    prometheus: Option<PrometheusFile>,
    name: Spanned<String>,
    #[serde(default)]
    kubeconfig: Option<PathBuf>,
    #[serde(default)]
    context: Option<String>,
    #[serde(default)]
    in_cluster: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct HubFile {
    #[serde(default)]
    kubeconfig: Option<PathBuf>,
    #[serde(default)]
    context: Option<String>,
    #[serde(default)]
    in_cluster: Option<Spanned<bool>>,
    #[serde(default)]
    namespace: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NotifyFile {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    url_from: Option<Spanned<SecretFile>>,
    #[serde(default)]
    format: Option<crate::agent::notify::Format>,
    #[serde(default)]
    secret: Option<Spanned<SecretFile>>,
    #[serde(default)]
    events: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ConfigFile {
    repo: RepoFile,
    #[serde(default)]
    interval: Option<Spanned<String>>,
    #[serde(default)]
    drift_interval: Option<Spanned<String>>,
    #[serde(default)]
    heartbeat: Option<Spanned<String>>,
    #[serde(default)]
    push_status: Option<bool>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    listen: Option<Spanned<String>>,
    #[serde(default)]
    webhook: Option<WebhookFile>,
    #[serde(default)]
    log: Option<LogFile>,
    #[serde(default)]
    stuck_after: Option<Spanned<String>>,
    #[serde(default)]
    helm: Option<PathBuf>,
    prometheus: Option<PrometheusFile>,
    clusters: Spanned<Vec<ClusterFile>>,
    #[serde(default)]
    notify: Vec<Spanned<NotifyFile>>,
    #[serde(default)]
    hub: Option<Spanned<HubFile>>,
    #[serde(default)]
    apply: Option<ApplyFile>,
}

struct Checker<'a> {
    file: &'a str,
}

impl Checker<'_> {
    fn invalid(&self, line: u64, field: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_string(),
            line: (line > 0).then_some(line),
            field: field.to_string(),
            message: message.into(),
        }
    }

    fn duration(
        &self,
        v: &Option<Spanned<String>>,
        field: &str,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        let Some(s) = v else { return Ok(default) };
        let d =
            parse_duration(&s.value).map_err(|m| self.invalid(s.referenced.line(), field, m.0))?;
        if d.is_zero() {
            return Err(self.invalid(s.referenced.line(), field, "must be longer than 0s"));
        }
        Ok(d)
    }

    /// `apply:`: every limit a positive number (a `qps` of 0 lifts the rate limit).
    fn apply(&self, a: Option<&ApplyFile>) -> Result<crate::apply::limit::Limits, ConfigError> {
        let mut limits = crate::apply::limit::Limits::default();
        let Some(a) = a else { return Ok(limits) };
        let count = |v: &Spanned<u64>, field: &str, max: u64| {
            if v.value == 0 || v.value > max {
                return Err(self.invalid(
                    v.referenced.line(),
                    field,
                    format!("must be between 1 and {max}, not {}", v.value),
                ));
            }
            Ok(v.value)
        };
        if let Some(c) = &a.concurrency {
            limits.concurrency = count(c, "apply.concurrency", 1024)? as usize;
        }
        if let Some(b) = &a.burst {
            limits.burst = count(b, "apply.burst", 100_000)? as u32;
        }
        if let Some(q) = &a.qps {
            if !q.value.is_finite() || q.value < 0.0 {
                return Err(self.invalid(
                    q.referenced.line(),
                    "apply.qps",
                    format!(
                        "must be 0 (no limit) or a positive number of requests a second, not {}",
                        q.value
                    ),
                ));
            }
            limits.qps = q.value;
        }
        Ok(limits)
    }

    fn secret(&self, s: &Spanned<SecretFile>, field: &str) -> Result<Secret, ConfigError> {
        match (&s.value.env, &s.value.file) {
            (Some(env), None) if !env.is_empty() => Ok(Secret::Env(env.clone())),
            (None, Some(path)) => Ok(Secret::File(path.clone())),
            _ => Err(self.invalid(
                s.referenced.line(),
                field,
                "give exactly one of {env: VARIABLE} or {file: PATH}; secrets are not written in the config itself",
            )),
        }
    }

    /// `repo.path`: a directory inside the repository, written relative to its root.
    fn fleet_path(&self, p: &Spanned<String>) -> Result<String, ConfigError> {
        let given = p.value.trim().trim_end_matches('/');
        match crate::tree::RepoPath::new(given) {
            Ok(path) if !path.as_str().is_empty() => Ok(path.as_str().to_string()),
            _ => Err(self.invalid(
                p.referenced.line(),
                "repo.path",
                format!("'{}' is not a directory inside the repository; write it relative to the repository root, e.g. deploy/fleet", p.value),
            )),
        }
    }

    fn auth(&self, a: &Spanned<AuthFile>) -> Result<Auth, ConfigError> {
        let line = a.referenced.line();
        let a = &a.value;
        let given = [a.token.is_some(), a.basic.is_some(), a.ssh.is_some()];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err(self.invalid(line, "repo.auth", "give exactly one of token, basic or ssh"));
        }
        if let Some(t) = &a.token {
            return Ok(Auth::Bearer {
                token: self.secret(t, "repo.auth.token")?,
            });
        }
        if let Some(b) = &a.basic {
            return Ok(Auth::Basic {
                username: b.username.clone(),
                password: self.secret(&b.password, "repo.auth.basic.password")?,
            });
        }
        let s = a.ssh.as_ref().expect("one of the three is set");
        let passphrase = match &s.passphrase {
            Some(p) => Some(self.secret(p, "repo.auth.ssh.passphrase")?),
            None => None,
        };
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/"));
        Ok(Auth::Ssh {
            username: s.username.clone().unwrap_or_else(|| "git".into()),
            private_key: s.private_key.clone(),
            passphrase,
            known_hosts: s
                .known_hosts
                .clone()
                .unwrap_or_else(|| home.join(".ssh/known_hosts")),
        })
    }

    fn prometheus(&self, p: &PrometheusFile, field: &str) -> Result<PrometheusConfig, ConfigError> {
        let url = p.url.value.trim();
        if !(url.starts_with("http://") || url.starts_with("https://"))
            || url.parse::<axum::http::Uri>().is_err()
        {
            return Err(self.invalid(
                p.url.referenced.line(),
                &format!("{field}.url"),
                format!("'{url}' is not an http:// or https:// URL, e.g. http://prometheus.monitoring:9090"),
            ));
        }
        let auth = match &p.auth {
            None => PrometheusAuth::None,
            Some(a) => match (&a.value.bearer, &a.value.basic) {
                (Some(t), None) => {
                    PrometheusAuth::Bearer(self.secret(t, &format!("{field}.auth.bearer"))?)
                }
                (None, Some(b)) => PrometheusAuth::Basic {
                    username: b.username.clone(),
                    password: self.secret(&b.password, &format!("{field}.auth.basic.password"))?,
                },
                _ => {
                    return Err(self.invalid(
                        a.referenced.line(),
                        &format!("{field}.auth"),
                        "give exactly one of bearer or basic",
                    ));
                }
            },
        };
        let tls = p.tls.as_ref();
        Ok(PrometheusConfig {
            url: url.to_string(),
            auth,
            timeout: self.duration(
                &p.timeout,
                &format!("{field}.timeout"),
                crate::prometheus::DEFAULT_TIMEOUT,
            )?,
            ca_file: tls.and_then(|t| t.ca_file.clone()),
            insecure_skip_verify: tls.and_then(|t| t.insecure_skip_verify).unwrap_or(false),
        })
    }

    fn notify(&self, list: &[Spanned<NotifyFile>]) -> Result<Vec<NotifyConfig>, ConfigError> {
        use crate::agent::notify::EventKind;
        let mut out = Vec::new();
        for (i, n) in list.iter().enumerate() {
            let field = format!("notify[{i}]");
            let line = n.referenced.line();
            let at = |s: &Spanned<SecretFile>, f: &str| -> Result<SecretAt, ConfigError> {
                Ok(SecretAt {
                    secret: self.secret(s, f)?,
                    file: self.file.to_string(),
                    line: s.referenced.line(),
                    field: f.to_string(),
                })
            };
            let url = match (&n.value.url, &n.value.url_from) {
                (Some(u), None) => {
                    let u = u.trim();
                    if !(u.starts_with("http://") || u.starts_with("https://"))
                        || u.parse::<axum::http::Uri>().is_err()
                    {
                        return Err(self.invalid(
                            line,
                            &format!("{field}.url"),
                            "not an http:// or https:// URL (a URL holding a token belongs in urlFrom: {env: NAME} or {file: PATH})",
                        ));
                    }
                    UrlAt::Plain(u.to_string())
                }
                (None, Some(s)) => UrlAt::Secret(at(s, &format!("{field}.urlFrom"))?),
                _ => {
                    return Err(self.invalid(
                        line,
                        &field,
                        "give exactly one of url or urlFrom ({env: NAME} or {file: PATH})",
                    ));
                }
            };
            let secret = n
                .value
                .secret
                .as_ref()
                .map(|s| at(s, &format!("{field}.secret")))
                .transpose()?;
            let events = match &n.value.events {
                None => EventKind::ALL.into_iter().collect(),
                Some(names) => {
                    let mut set = std::collections::BTreeSet::new();
                    for name in names {
                        let Some(kind) =
                            EventKind::ALL.into_iter().find(|k| k.name() == name.value)
                        else {
                            return Err(self.invalid(
                                name.referenced.line(),
                                &format!("{field}.events"),
                                format!(
                                    "unknown event '{}'; the events are {}",
                                    name.value,
                                    EventKind::ALL.map(EventKind::name).join(", ")
                                ),
                            ));
                        };
                        set.insert(kind);
                    }
                    if set.is_empty() {
                        return Err(self.invalid(
                            line,
                            &format!("{field}.events"),
                            "list at least one event, or leave events out for all of them",
                        ));
                    }
                    set
                }
            };
            out.push(NotifyConfig {
                url,
                format: n.value.format.unwrap_or_default(),
                secret,
                events,
            });
        }
        Ok(out)
    }

    fn clusters(
        &self,
        list: &Spanned<Vec<ClusterFile>>,
    ) -> Result<Vec<ClusterConfig>, ConfigError> {
        if list.value.is_empty() {
            return Err(self.invalid(
                list.referenced.line(),
                "clusters",
                "list at least one cluster (name, and kubeconfig/context or inCluster: true)",
            ));
        }
        let mut out: Vec<ClusterConfig> = Vec::new();
        for (i, c) in list.value.iter().enumerate() {
            let field = format!("clusters[{i}]");
            let line = c.name.referenced.line();
            if c.name.value.is_empty() {
                return Err(self.invalid(line, &format!("{field}.name"), "must not be empty"));
            }
            if out.iter().any(|o| o.name == c.name.value) {
                return Err(self.invalid(
                    line,
                    &format!("{field}.name"),
                    format!("cluster '{}' is listed twice", c.name.value),
                ));
            }
            let in_cluster = c.in_cluster.as_ref().is_some_and(|b| b.value);
            if in_cluster && (c.kubeconfig.is_some() || c.context.is_some()) {
                return Err(self.invalid(
                    c.in_cluster.as_ref().map_or(line, |b| b.referenced.line()),
                    &format!("{field}.inCluster"),
                    "inCluster: true cannot be combined with kubeconfig or context",
                ));
            }
            let prometheus = c
                .prometheus
                .as_ref()
                .map(|p| self.prometheus(p, &format!("{field}.prometheus")))
                .transpose()?;
            out.push(ClusterConfig {
                prometheus,
                name: c.name.value.clone(),
                connection: if in_cluster {
                    Connection::InCluster
                } else {
                    Connection::Kubeconfig {
                        path: c.kubeconfig.clone(),
                        context: c.context.clone(),
                    }
                },
            });
        }
        Ok(out)
    }
}

impl Checker<'_> {
    fn hub(&self, h: &Spanned<HubFile>) -> Result<HubConfig, ConfigError> {
        let line = h.referenced.line();
        let in_cluster = h.value.in_cluster.as_ref().is_some_and(|b| b.value);
        if in_cluster && (h.value.kubeconfig.is_some() || h.value.context.is_some()) {
            return Err(self.invalid(
                line,
                "hub.inCluster",
                "inCluster: true cannot be combined with kubeconfig or context",
            ));
        }
        if !in_cluster && h.value.kubeconfig.is_none() && h.value.context.is_none() {
            return Err(self.invalid(
                line,
                "hub",
                "say how to reach the status hub: kubeconfig and/or context, or inCluster: true",
            ));
        }
        let namespace = match &h.value.namespace {
            Some(n) if !crate::names::is_dns_label(&n.value) => {
                return Err(self.invalid(
                    n.referenced.line(),
                    "hub.namespace",
                    format!("'{}' is not a namespace name", n.value),
                ));
            }
            Some(n) => n.value.clone(),
            None => crate::status::object::NAMESPACE.to_string(),
        };
        Ok(HubConfig {
            connection: if in_cluster {
                Connection::InCluster
            } else {
                Connection::Kubeconfig {
                    path: h.value.kubeconfig.clone(),
                    context: h.value.context.clone(),
                }
            },
            namespace,
        })
    }
}

impl AgentConfig {
    /// The Prometheus of `cluster`: its own, else the agent's.
    pub fn prometheus_for<'a>(
        &'a self,
        cluster: &'a ClusterConfig,
    ) -> Option<&'a PrometheusConfig> {
        cluster.prometheus.as_ref().or(self.prometheus.as_ref())
    }

    /// The `notify:` endpoints with their URLs and secrets read (at start-up, so a
    /// missing variable or file stops the agent with the line that names it).
    pub fn notify_endpoints(&self) -> Result<Vec<crate::agent::notify::Endpoint>, ConfigError> {
        self.notify
            .iter()
            .map(|n| {
                let url = match &n.url {
                    UrlAt::Plain(u) => u.clone(),
                    UrlAt::Secret(s) => {
                        let u = s.read()?.trim().to_string();
                        if !(u.starts_with("http://") || u.starts_with("https://"))
                            || u.parse::<axum::http::Uri>().is_err()
                        {
                            return Err(ConfigError::Invalid {
                                file: s.file.clone(),
                                line: Some(s.line),
                                field: s.field.clone(),
                                message: "the secret is not an http:// or https:// URL".into(),
                            });
                        }
                        u
                    }
                };
                Ok(crate::agent::notify::Endpoint {
                    url,
                    format: n.format,
                    secret: n.secret.as_ref().map(SecretAt::read).transpose()?,
                    events: n.events.clone(),
                })
            })
            .collect()
    }

    /// Reads the webhook secrets (at start-up, so a missing variable or file stops the
    /// agent with the line that names it, not the first push).
    pub fn webhook_secrets(&self) -> Result<WebhookSecrets, ConfigError> {
        Ok(WebhookSecrets {
            github: self
                .webhook
                .github
                .as_ref()
                .map(SecretAt::read)
                .transpose()?,
            gitlab: self
                .webhook
                .gitlab
                .as_ref()
                .map(SecretAt::read)
                .transpose()?,
        })
    }
}

/// Parses and validates `text`, the content of the agent config `file`. Secrets are
/// only located here, not read.
pub fn parse(file: &str, text: &str) -> Result<AgentConfig, ConfigError> {
    let raw: ConfigFile = crate::yaml::parse_typed(file, text)?;
    let check = Checker { file };
    let defaults = AgentConfig::default();
    if raw.repo.url.value.trim().is_empty() {
        return Err(check.invalid(
            raw.repo.url.referenced.line(),
            "repo.url",
            "must name a Git URL or a local path",
        ));
    }
    let listen = match &raw.listen {
        Some(l) => l.value.parse::<SocketAddr>().map_err(|_| {
            check.invalid(
                l.referenced.line(),
                "listen",
                format!(
                    "'{}' is not an address and port such as 0.0.0.0:9090",
                    l.value
                ),
            )
        })?,
        None => defaults.listen,
    };
    let mut webhook = WebhookConfig::default();
    if let Some(w) = &raw.webhook {
        let at = |s: &Spanned<SecretFile>, field: &str| -> Result<SecretAt, ConfigError> {
            Ok(SecretAt {
                secret: check.secret(s, field)?,
                file: file.to_string(),
                line: s.referenced.line(),
                field: field.to_string(),
            })
        };
        webhook.github = w
            .github
            .as_ref()
            .map(|s| at(s, "webhook.github"))
            .transpose()?;
        webhook.gitlab = w
            .gitlab
            .as_ref()
            .map(|s| at(s, "webhook.gitlab"))
            .transpose()?;
    }
    let log = raw.log.as_ref();
    Ok(AgentConfig {
        repo: raw.repo.url.value.clone(),
        repo_path: match &raw.repo.path {
            Some(p) => Some(check.fleet_path(p)?),
            None => None,
        },
        branch: raw.repo.branch.clone().unwrap_or(defaults.branch),
        rev: None,
        auth: match &raw.repo.auth {
            Some(a) => check.auth(a)?,
            None => Auth::None,
        },
        cache_dir: raw.repo.cache_dir.clone(),
        verify: match &raw.repo.verify {
            Some(v) if v.value.allowed_signers.is_none() && v.value.openpgp_keyring.is_none() => {
                return Err(check.invalid(
                    v.referenced.line(),
                    "repo.verify",
                    "name an allowedSigners file, an openpgpKeyring, or both",
                ));
            }
            Some(v) => Some(VerifyConfig {
                allowed_signers: v.value.allowed_signers.clone(),
                openpgp_keyring: v.value.openpgp_keyring.clone(),
            }),
            None => None,
        },
        interval: check.duration(&raw.interval, "interval", defaults.interval)?,
        drift_interval: check.duration(
            &raw.drift_interval,
            "driftInterval",
            defaults.drift_interval,
        )?,
        heartbeat: check.duration(&raw.heartbeat, "heartbeat", defaults.heartbeat)?,
        push_status: raw.push_status.unwrap_or(true),
        namespace: raw.namespace.clone().unwrap_or(defaults.namespace),
        listen,
        webhook,
        log_format: log.and_then(|l| l.format).unwrap_or_default(),
        log_level: log
            .and_then(|l| l.level.clone())
            .unwrap_or(defaults.log_level),
        stuck_after: check.duration(&raw.stuck_after, "stuckAfter", defaults.stuck_after)?,
        helm: raw.helm.clone(),
        prometheus: raw
            .prometheus
            .as_ref()
            .map(|p| check.prometheus(p, "prometheus"))
            .transpose()?,
        clusters: check.clusters(&raw.clusters)?,
        notify: check.notify(&raw.notify)?,
        hub: raw.hub.as_ref().map(|h| check.hub(h)).transpose()?,
        clock: defaults.clock,
        apply: check.apply(raw.apply.as_ref())?,
    })
}

/// Reads and validates the agent config at `path`.
pub fn load(path: &std::path::Path) -> Result<AgentConfig, ConfigError> {
    let file = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| ConfigError::Read {
        file: file.clone(),
        message: e.to_string(),
    })?;
    crate::yaml::check_size(&file, meta.len())?;
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        file: file.clone(),
        message: e.to_string(),
    })?;
    parse(&file, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = "repo:
  url: https://git.example.com/fleet.git
  branch: release
  auth:
    basic: {username: bot, password: {file: /run/secrets/pw}}
interval: 15s
heartbeat: 2m
pushStatus: false
listen: 0.0.0.0:8080
log: {format: json, level: debug}
clusters:
  - name: prod-bj-1
    inCluster: true
  - name: prod-bj-2
    kubeconfig: /etc/kube/config
    context: bj-2
";

    #[test]
    fn a_full_config_is_read_with_every_field() {
        let c = parse("agent.yaml", FULL).unwrap();
        assert_eq!(c.repo, "https://git.example.com/fleet.git");
        assert_eq!(c.branch, "release");
        assert_eq!(
            c.auth,
            Auth::Basic {
                username: "bot".into(),
                password: Secret::File("/run/secrets/pw".into())
            }
        );
        assert_eq!(c.interval, Duration::from_secs(15));
        assert_eq!(c.heartbeat, Duration::from_secs(120));
        assert!(!c.push_status);
        assert_eq!(c.listen.port(), 8080);
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.log_level, "debug");
        assert_eq!(c.clusters.len(), 2);
        assert_eq!(c.clusters[0].connection, Connection::InCluster);
        assert_eq!(
            c.clusters[1].connection,
            Connection::Kubeconfig {
                path: Some("/etc/kube/config".into()),
                context: Some("bj-2".into())
            }
        );
    }

    #[test]
    fn defaults_fill_what_is_left_out() {
        let c = parse("a.yaml", "repo: {url: /srv/fleet}\nclusters: [{name: x}]\n").unwrap();
        assert_eq!(c.branch, "main");
        assert_eq!(c.interval, Duration::from_secs(30));
        assert!(c.push_status);
        assert_eq!(c.log_format, LogFormat::Text);
        assert!(!c.webhook.enabled());
    }

    fn error(text: &str) -> String {
        parse("agent.yaml", text).unwrap_err().to_string()
    }

    #[test]
    fn mistakes_are_reported_with_file_line_and_field() {
        let e = error("repo: {url: x}\ninterval: 10 minutes\nclusters: [{name: a}]\n");
        assert!(e.starts_with("agent.yaml:2: field 'interval':"), "{e}");
        let e = error("repo: {url: x}\nclusters:\n  - name: a\n  - name: a\n");
        assert_eq!(
            e,
            "agent.yaml:4: field 'clusters[1].name': cluster 'a' is listed twice"
        );
        let e = error("repo: {url: x}\nclusters: [{name: a}]\npoll: 3s\n");
        assert!(e.starts_with("agent.yaml:3"), "{e}");
        assert!(e.contains("unknown field 'poll'"), "{e}");
        let e = error("repo: {url: x}\nlisten: everywhere\nclusters: [{name: a}]\n");
        assert!(e.starts_with("agent.yaml:2: field 'listen'"), "{e}");
        let e = error("repo:\n  url: x\n  auth:\n    token: {value: abc}\nclusters: [{name: a}]\n");
        assert!(e.starts_with("agent.yaml:4"), "{e}");
        let e = error(
            "repo:\n  url: x\n  auth:\n    token: {env: A}\n    ssh: {privateKey: k}\nclusters: [{name: a}]\n",
        );
        assert!(e.contains("exactly one of token, basic or ssh"), "{e}");
        let e =
            error("repo: {url: x}\nclusters:\n  - name: a\n    inCluster: true\n    context: c\n");
        assert!(
            e.starts_with("agent.yaml:4: field 'clusters[0].inCluster'"),
            "{e}"
        );
        let e = error("repo: {url: x}\nclusters: []\n");
        assert!(e.contains("field 'clusters'"), "{e}");
        let c = parse(
            "agent.yaml",
            "repo: {url: x}\nwebhook:\n  github: {env: ROLLWAVE_TEST_SURELY_UNSET_VARIABLE}\nclusters: [{name: a}]\n",
        )
        .unwrap();
        let e = c.webhook_secrets().unwrap_err().to_string();
        assert!(e.starts_with("agent.yaml:3: field 'webhook.github'"), "{e}");
        assert!(
            e.contains("ROLLWAVE_TEST_SURELY_UNSET_VARIABLE is not set"),
            "{e}"
        );
    }

    #[test]
    fn an_empty_webhook_secret_is_refused_naming_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let c = parse(
            "agent.yaml",
            &format!(
                "repo: {{url: x}}\nwebhook:\n  gitlab: {{file: {}}}\nclusters: [{{name: a}}]\n",
                empty.display()
            ),
        )
        .unwrap();
        let e = c.webhook_secrets().unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "agent.yaml:3: field 'webhook.gitlab': the secret is empty (file {}); set it to a long random value, e.g. `openssl rand -hex 32`",
                empty.display()
            )
        );
        std::fs::write(&empty, "s3cret\n").unwrap();
        assert_eq!(
            c.webhook_secrets().unwrap().gitlab.as_deref(),
            Some("s3cret")
        );
    }

    #[test]
    fn apply_limits_default_and_are_checked_with_their_line() {
        let d = parse("a.yaml", "repo: {url: x}\nclusters: [{name: a}]\n").unwrap();
        assert_eq!(d.apply, crate::apply::limit::Limits::default());
        let c = parse(
            "a.yaml",
            "repo: {url: x}\napply: {concurrency: 4, qps: 0, burst: 8}\nclusters: [{name: a}]\n",
        )
        .unwrap();
        assert_eq!(
            (c.apply.concurrency, c.apply.qps, c.apply.burst),
            (4, 0.0, 8)
        );
        let e = error("repo: {url: x}\napply:\n  concurrency: 0\nclusters: [{name: a}]\n");
        assert_eq!(
            e,
            "agent.yaml:3: field 'apply.concurrency': must be between 1 and 1024, not 0"
        );
        let e = error("repo: {url: x}\napply: {qps: -1}\nclusters: [{name: a}]\n");
        assert!(
            e.starts_with("agent.yaml:2: field 'apply.qps': must be 0 (no limit)"),
            "{e}"
        );
    }

    #[test]
    fn stuck_after_is_a_duration_checked_with_its_line() {
        let c = parse(
            "a.yaml",
            "repo: {url: x}\nstuckAfter: 90s\nclusters: [{name: a}]\n",
        )
        .unwrap();
        assert_eq!(c.stuck_after, Duration::from_secs(90));
        let d = parse("a.yaml", "repo: {url: x}\nclusters: [{name: a}]\n").unwrap();
        assert_eq!(d.stuck_after, Duration::from_secs(600));
        let e = error("repo: {url: x}\nstuckAfter: 0s\nclusters: [{name: a}]\n");
        assert_eq!(
            e,
            "agent.yaml:2: field 'stuckAfter': must be longer than 0s"
        );
    }

    #[test]
    fn prometheus_is_read_for_the_agent_and_per_cluster() {
        let c = parse(
            "agent.yaml",
            "repo: {url: x}
prometheus:
  url: https://prom.example.com/
  auth: {bearer: {env: PROM_TOKEN}}
  timeout: 5s
  tls: {caFile: /etc/ca.pem}
clusters:
- name: a
- name: b
  prometheus:
    url: http://prom-b:9090
    auth: {basic: {username: u, password: {file: /run/pw}}}
",
        )
        .unwrap();
        let agent = c.prometheus.as_ref().unwrap();
        assert_eq!(agent.url, "https://prom.example.com/");
        assert_eq!(
            agent.auth,
            PrometheusAuth::Bearer(Secret::Env("PROM_TOKEN".into()))
        );
        assert_eq!(agent.timeout, Duration::from_secs(5));
        assert_eq!(
            agent.ca_file.as_deref(),
            Some(std::path::Path::new("/etc/ca.pem"))
        );
        assert_eq!(c.prometheus_for(&c.clusters[0]).unwrap().url, agent.url);
        let b = c.prometheus_for(&c.clusters[1]).unwrap();
        assert_eq!(b.url, "http://prom-b:9090");
        assert_eq!(b.timeout, crate::prometheus::DEFAULT_TIMEOUT);
        assert_eq!(
            b.auth,
            PrometheusAuth::Basic {
                username: "u".into(),
                password: Secret::File("/run/pw".into())
            }
        );
        let none = parse("a.yaml", "repo: {url: x}\nclusters: [{name: a}]\n").unwrap();
        assert!(none.prometheus_for(&none.clusters[0]).is_none());
    }

    #[test]
    fn prometheus_mistakes_name_the_line_and_field() {
        assert_eq!(
            error("repo: {url: x}\nprometheus: {url: 'prom:9090'}\nclusters: [{name: a}]\n"),
            "agent.yaml:2: field 'prometheus.url': 'prom:9090' is not an http:// or https:// URL, e.g. http://prometheus.monitoring:9090"
        );
        assert_eq!(
            error(
                "repo: {url: x}\nclusters:\n- name: a\n  prometheus:\n    url: http://p\n    timeout: 0s\n"
            ),
            "agent.yaml:6: field 'clusters[0].prometheus.timeout': must be longer than 0s"
        );
        assert!(
            error(
                "repo: {url: x}\nprometheus:\n  url: http://p\n  auth: {}\nclusters: [{name: a}]\n"
            )
            .starts_with(
                "agent.yaml:4: field 'prometheus.auth': give exactly one of bearer or basic"
            )
        );
    }

    #[test]
    fn an_alias_bomb_is_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let prev = format!("*a{}", i - 1);
            text.push_str(&format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(", ")));
        }
        assert!(parse("agent.yaml", &text).is_err());
    }
}
