//! Commit signature checks: only commits signed by trusted keys are eligible when an
//! agent is configured to verify. SSH signatures are checked against an
//! allowed-signers file (the format `git verify-commit` uses with `gpg.format=ssh`),
//! OpenPGP signatures against an armored public keyring.

use std::path::Path;

use git2::{Oid, Repository};
use pgp::composed::{Deserializable, DetachedSignature, SignedPublicKey};
use pgp::types::KeyDetails;

use super::SourceError;

/// One line of an allowed-signers file.
#[derive(Debug, Clone)]
pub struct AllowedSigner {
    /// Principals (e-mail addresses) the key signs for.
    pub principals: Vec<String>,
    /// Namespaces the key may sign in (empty: any).
    pub namespaces: Vec<String>,
    /// The key.
    pub key: ssh_key::PublicKey,
}

/// The keys an agent trusts.
#[derive(Debug, Clone, Default)]
pub struct TrustPolicy {
    /// SSH signers.
    pub ssh: Vec<AllowedSigner>,
    /// OpenPGP keys.
    pub pgp: Vec<SignedPublicKey>,
}

/// Why a commit is not eligible.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// No signature at all.
    #[error("commit {0} is not signed")]
    Unsigned(String),
    /// Signed, but not by a trusted key (or the signature does not verify).
    #[error("commit {commit} is not signed by a trusted key: {reason}")]
    Untrusted {
        /// The commit.
        commit: String,
        /// Why.
        reason: String,
    },
}

/// Who signed a trusted commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    /// `ssh` or `openpgp`.
    pub method: &'static str,
    /// Principal or key fingerprint.
    pub identity: String,
}

fn is_key_type(s: &str) -> bool {
    s.starts_with("ssh-") || s.starts_with("ecdsa-") || s.starts_with("sk-")
}

/// Parses an allowed-signers file (`principals [options] keytype key [comment]`).
fn parse_allowed_signers(text: &str, file: &str) -> Result<Vec<AllowedSigner>, SourceError> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |m: String| SourceError::Auth(format!("{file}:{}: {m}", n + 1));
        let tokens: Vec<&str> = line.split_whitespace().collect();
        if tokens.len() < 3 {
            return Err(err("expected 'principals [options] keytype key'".into()));
        }
        let principals: Vec<String> = tokens[0].split(',').map(String::from).collect();
        let (options, key_at) = if is_key_type(tokens[1]) {
            ("", 1)
        } else {
            (tokens[1], 2)
        };
        if tokens.len() < key_at + 2 {
            return Err(err("missing key".into()));
        }
        let mut namespaces = Vec::new();
        for opt in options.split(',').filter(|o| !o.is_empty()) {
            if let Some(v) = opt.strip_prefix("namespaces=") {
                namespaces = v.trim_matches('"').split(',').map(String::from).collect();
            }
        }
        let key =
            ssh_key::PublicKey::from_openssh(&format!("{} {}", tokens[key_at], tokens[key_at + 1]))
                .map_err(|e| err(format!("bad key: {e}")))?;
        out.push(AllowedSigner {
            principals,
            namespaces,
            key,
        });
    }
    Ok(out)
}

impl TrustPolicy {
    /// Loads the allowed-signers file and/or the armored OpenPGP keyring.
    pub fn load(
        allowed_signers: Option<&Path>,
        pgp_keyring: Option<&Path>,
    ) -> Result<Self, SourceError> {
        let mut policy = TrustPolicy::default();
        if let Some(p) = allowed_signers {
            let text = std::fs::read_to_string(p)
                .map_err(|e| SourceError::Auth(format!("{}: {e}", p.display())))?;
            policy.ssh = parse_allowed_signers(&text, &p.display().to_string())?;
        }
        if let Some(p) = pgp_keyring {
            let text = std::fs::read_to_string(p)
                .map_err(|e| SourceError::Auth(format!("{}: {e}", p.display())))?;
            let (keys, _) = SignedPublicKey::from_string_many(&text).map_err(|e| {
                SourceError::Auth(format!(
                    "{}: not an armored OpenPGP keyring: {e}",
                    p.display()
                ))
            })?;
            for k in keys {
                policy.pgp.push(
                    k.map_err(|e| SourceError::Auth(format!("{}: bad key: {e}", p.display())))?,
                );
            }
        }
        Ok(policy)
    }

    /// Checks the signature of `commit`.
    pub fn verify_commit(&self, repo: &Repository, commit: Oid) -> Result<Signer, VerifyError> {
        let id = commit.to_string();
        let (sig, data) = match repo.extract_signature(&commit, None) {
            Ok(x) => x,
            Err(_) => return Err(VerifyError::Unsigned(id)),
        };
        let sig = String::from_utf8_lossy(&sig).into_owned();
        let untrusted = |reason: String| VerifyError::Untrusted {
            commit: id.clone(),
            reason,
        };
        if sig.contains("BEGIN SSH SIGNATURE") {
            let parsed = ssh_key::SshSig::from_pem(sig.as_bytes())
                .map_err(|e| untrusted(format!("malformed SSH signature: {e}")))?;
            for signer in &self.ssh {
                if signer.key.key_data() != parsed.public_key() {
                    continue;
                }
                if !signer.namespaces.is_empty() && !signer.namespaces.iter().any(|n| n == "git") {
                    return Err(untrusted(
                        "the key is not allowed to sign in the 'git' namespace".into(),
                    ));
                }
                return match signer.key.verify("git", &data, &parsed) {
                    Ok(()) => Ok(Signer {
                        method: "ssh",
                        identity: signer.principals.join(","),
                    }),
                    Err(e) => Err(untrusted(format!("SSH signature does not verify: {e}"))),
                };
            }
            return Err(untrusted("SSH key is not in the allowed signers".into()));
        }
        if sig.contains("BEGIN PGP SIGNATURE") {
            let (parsed, _) = DetachedSignature::from_string(&sig)
                .map_err(|e| untrusted(format!("malformed OpenPGP signature: {e}")))?;
            for key in &self.pgp {
                if parsed.verify(&key.primary_key, &data).is_ok()
                    || key
                        .public_subkeys
                        .iter()
                        .any(|s| parsed.verify(&s.key, &data).is_ok())
                {
                    return Ok(Signer {
                        method: "openpgp",
                        identity: format!("{}", key.primary_key.fingerprint()),
                    });
                }
            }
            return Err(untrusted(
                "OpenPGP signature is not by a trusted key".into(),
            ));
        }
        Err(untrusted("unknown signature format".into()))
    }

    /// The newest commit of `history` (newest first) that verifies, and the reasons the
    /// newer ones did not.
    pub fn newest_trusted(
        &self,
        repo: &Repository,
        history: &[Oid],
    ) -> (Option<Oid>, Vec<VerifyError>) {
        let mut refused = Vec::new();
        for oid in history {
            match self.verify_commit(repo, *oid) {
                Ok(_) => return (Some(*oid), refused),
                Err(e) => refused.push(e),
            }
        }
        (None, refused)
    }
}
