//! Credentials for Git remotes: HTTP basic, bearer token, or an SSH key checked
//! against known_hosts. Secrets come from files or the environment and are never
//! printed (the `Debug` form is redacted).

use std::cell::Cell;
use std::path::{Path, PathBuf};

use base64::Engine;

use super::SourceError;

/// Where a secret comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// The value itself (from a config already read).
    Value(String),
    /// A file holding it (trailing newline trimmed).
    File(PathBuf),
    /// An environment variable holding it.
    Env(String),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Value(_) => f.write_str("Secret(<redacted>)"),
            Secret::File(p) => write!(f, "Secret(file {})", p.display()),
            Secret::Env(v) => write!(f, "Secret(env {v})"),
        }
    }
}

impl Secret {
    /// Reads the secret.
    pub fn read(&self) -> Result<String, SourceError> {
        match self {
            Secret::Value(v) => Ok(v.clone()),
            Secret::File(p) => std::fs::read_to_string(p)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|e| {
                    SourceError::Auth(format!("cannot read secret file {}: {e}", p.display()))
                }),
            Secret::Env(v) => std::env::var(v)
                .map_err(|_| SourceError::Auth(format!("environment variable {v} is not set"))),
        }
    }
}

/// How to authenticate to the remote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Auth {
    /// Anonymous.
    #[default]
    None,
    /// HTTP basic authentication.
    Basic {
        /// User name.
        username: String,
        /// Password or personal access token.
        password: Secret,
    },
    /// HTTP `Authorization: Bearer` token.
    Bearer {
        /// The token.
        token: Secret,
    },
    /// An SSH private key; the server's host key must be in `known_hosts`.
    Ssh {
        /// User name (usually `git`).
        username: String,
        /// Private key file.
        private_key: PathBuf,
        /// Passphrase, if the key has one.
        passphrase: Option<Secret>,
        /// known_hosts file the server key must appear in.
        known_hosts: PathBuf,
    },
}

impl Auth {
    /// Reads credentials from `ROLLWAVE_GIT_TOKEN`, or `ROLLWAVE_GIT_USERNAME` with
    /// `ROLLWAVE_GIT_PASSWORD`, or `ROLLWAVE_GIT_SSH_KEY` with `ROLLWAVE_GIT_KNOWN_HOSTS`.
    pub fn from_env() -> Auth {
        if std::env::var_os("ROLLWAVE_GIT_TOKEN").is_some() {
            return Auth::Bearer {
                token: Secret::Env("ROLLWAVE_GIT_TOKEN".into()),
            };
        }
        if let Ok(username) = std::env::var("ROLLWAVE_GIT_USERNAME") {
            return Auth::Basic {
                username,
                password: Secret::Env("ROLLWAVE_GIT_PASSWORD".into()),
            };
        }
        if let Ok(key) = std::env::var("ROLLWAVE_GIT_SSH_KEY") {
            let known_hosts = std::env::var("ROLLWAVE_GIT_KNOWN_HOSTS")
                .map(PathBuf::from)
                .unwrap_or_else(|_| home().join(".ssh/known_hosts"));
            return Auth::Ssh {
                username: "git".into(),
                private_key: key.into(),
                passphrase: None,
                known_hosts,
            };
        }
        Auth::None
    }

    /// Extra HTTP headers (bearer tokens).
    pub fn headers(&self) -> Result<Vec<String>, SourceError> {
        match self {
            Auth::Bearer { token } => Ok(vec![format!("Authorization: Bearer {}", token.read()?)]),
            _ => Ok(Vec::new()),
        }
    }

    /// Installs credential and host-key callbacks. Credentials are offered once: a
    /// rejected password fails the operation instead of looping.
    pub fn install<'a>(&'a self, cb: &mut git2::RemoteCallbacks<'a>) {
        let tried = Cell::new(false);
        cb.credentials(move |_url, username_from_url, allowed| {
            if tried.replace(true) {
                return Err(git2::Error::from_str(
                    "authentication failed: the remote rejected the credentials",
                ));
            }
            match self {
                Auth::Basic { username, password } if allowed.contains(git2::CredentialType::USER_PASS_PLAINTEXT) => {
                    let pw = password.read().map_err(|e| git2::Error::from_str(&e.to_string()))?;
                    git2::Cred::userpass_plaintext(username, &pw)
                }
                Auth::Ssh { username, private_key, passphrase, .. } => {
                    let pass = match passphrase {
                        Some(p) => Some(p.read().map_err(|e| git2::Error::from_str(&e.to_string()))?),
                        None => None,
                    };
                    let user = username_from_url.unwrap_or(username);
                    git2::Cred::ssh_key(user, None, private_key, pass.as_deref())
                }
                _ => Err(git2::Error::from_str(
                    "the remote asks for credentials and none are configured (set a token, basic auth or an SSH key)",
                )),
            }
        });
        if let Auth::Ssh { known_hosts, .. } = self {
            let known_hosts = known_hosts.clone();
            cb.certificate_check(move |cert, host| {
                let Some(hostkey) = cert.as_hostkey() else {
                    return Ok(git2::CertificateCheckStatus::CertificatePassthrough);
                };
                let Some(key) = hostkey.hostkey() else {
                    return Err(git2::Error::from_str("the SSH server sent no host key"));
                };
                if known_host_matches(&known_hosts, host, key) {
                    Ok(git2::CertificateCheckStatus::CertificateOk)
                } else {
                    Err(git2::Error::from_str(&format!(
                        "host key of '{host}' is not in {}; add it (ssh-keyscan) after checking it",
                        known_hosts.display()
                    )))
                }
            });
        }
    }
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// Whether `known_hosts` lists `host` with exactly this raw host key.
fn known_host_matches(known_hosts: &Path, host: &str, key: &[u8]) -> bool {
    let Ok(text) = std::fs::read_to_string(known_hosts) else {
        return false;
    };
    let b64 = base64::engine::general_purpose::STANDARD.encode(key);
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .any(|line| {
            let mut parts = line.split_whitespace();
            let (Some(hosts), Some(_kind), Some(k)) = (parts.next(), parts.next(), parts.next())
            else {
                return false;
            };
            k == b64
                && hosts.split(',').any(|h| {
                    let h = h.trim_start_matches('[');
                    let h = h.split("]:").next().unwrap_or(h);
                    h == host
                })
        })
}
