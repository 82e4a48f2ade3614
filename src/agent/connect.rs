//! From a cluster's [`Connection`] to a client configuration, with errors a person can
//! act on: one sentence naming what was tried, the underlying cause once, and the fix.
//! The kube library's own errors repeat their cause at every layer ("failed to read
//! kubeconfig ...: No such file or directory: No such file or directory"), so only the
//! innermost cause is kept.

use std::path::{Path, PathBuf};

use kube::config::{KubeConfigOptions, Kubeconfig};

use super::config::Connection;

/// The variable Kubernetes sets in every pod; without it the agent is not in one.
const SERVICE_HOST: &str = "KUBERNETES_SERVICE_HOST";

/// The kubeconfig a default lookup reads: `$KUBECONFIG` as written, else
/// `~/.kube/config`.
fn default_kubeconfig() -> Option<String> {
    match std::env::var("KUBECONFIG") {
        Ok(v) if !v.is_empty() => Some(v),
        _ => std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".kube/config").display().to_string()),
    }
}

/// Why in-cluster configuration failed, and what to do.
fn in_cluster_message(cause: &(dyn std::error::Error + 'static)) -> String {
    if std::env::var_os(SERVICE_HOST).is_none() {
        format!(
            "inCluster: not running in a Kubernetes pod ({SERVICE_HOST} is not set); run the agent in a pod, or give this cluster a kubeconfig and context instead"
        )
    } else {
        format!(
            "inCluster: cannot use the pod's service account ({}); mount its token (automountServiceAccountToken: true)",
            crate::error_text::root_cause(cause)
        )
    }
}

/// Why no client could be made for a cluster: each message says which kubeconfig or
/// token was tried and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// `inCluster` outside a pod, or without the pod's service account.
    #[error("{0}")]
    InCluster(String),
    /// A kubeconfig that cannot be read or lacks the context.
    #[error("{0}")]
    Kubeconfig(String),
    /// Neither a kubeconfig nor a pod.
    #[error("{0}")]
    NoCluster(String),
    /// The configuration was read and no client could be made of it.
    #[error("cannot create a Kubernetes client: {0}")]
    Client(kube::Error),
}

/// The client configuration `connection` describes (timeouts are the caller's).
pub async fn config_for(connection: &Connection) -> Result<kube::Config, ConnectError> {
    match connection {
        Connection::InCluster => {
            kube::Config::incluster().map_err(|e| ConnectError::InCluster(in_cluster_message(&e)))
        }
        Connection::Kubeconfig { path, context } => {
            let options = KubeConfigOptions {
                context: context.clone(),
                ..Default::default()
            };
            match path {
                Some(path) => from_file(path, &options).await,
                None if context.is_some() => kube::Config::from_kubeconfig(&options)
                    .await
                    .map_err(|e| {
                        let file = default_kubeconfig().unwrap_or_else(|| "~/.kube/config".into());
                        ConnectError::Kubeconfig(format!(
                            "kubeconfig {file}: {}; list its contexts with `kubectl config get-contexts`, or pass --kubeconfig",
                            crate::error_text::root_cause(&e)
                        ))
                    }),
                None => match kube::Config::infer().await {
                    Ok(c) => Ok(c),
                    Err(_) => Err(ConnectError::NoCluster(no_cluster_message())),
                },
            }
        }
    }
}

/// Reads one kubeconfig file.
async fn from_file(path: &Path, options: &KubeConfigOptions) -> Result<kube::Config, ConnectError> {
    let shown = path.display();
    let kc = Kubeconfig::read_from(path).map_err(|e| {
        ConnectError::Kubeconfig(format!(
            "cannot read kubeconfig {shown}: {}; give the path of an existing kubeconfig file",
            crate::error_text::root_cause(&e)
        ))
    })?;
    kube::Config::from_custom_kubeconfig(kc, options)
        .await
        .map_err(|e| {
            ConnectError::Kubeconfig(format!(
                "kubeconfig {shown}: {}; list its contexts with `kubectl --kubeconfig {shown} config get-contexts`",
                crate::error_text::root_cause(&e)
            ))
        })
}

/// Neither a kubeconfig nor a pod: say which kubeconfig was looked for and why it did
/// not do.
fn no_cluster_message() -> String {
    let fix = "pass --kubeconfig FILE or set KUBECONFIG (`rollwave sim --kubeconfig FILE` writes one for simulated clusters)";
    match std::env::var("KUBECONFIG") {
        Ok(v) if !v.is_empty() => {
            let cause = Kubeconfig::read()
                .err()
                .map(|e| crate::error_text::root_cause(&e))
                .unwrap_or_else(|| "it names no usable context".into());
            format!("no cluster configured: KUBECONFIG={v} cannot be used ({cause}); {fix}")
        }
        _ => match default_kubeconfig() {
            Some(file) if Path::new(&file).exists() => {
                let cause = Kubeconfig::read_from(&file)
                    .err()
                    .map(|e| crate::error_text::root_cause(&e))
                    .unwrap_or_else(|| "it names no usable context".into());
                format!("no cluster configured: {file} cannot be used ({cause}); {fix}")
            }
            _ => match kube::Config::incluster() {
                Err(e) if std::env::var_os(SERVICE_HOST).is_some() => in_cluster_message(&e),
                _ => format!(
                    "no cluster configured: KUBECONFIG is not set, there is no ~/.kube/config, and this is not a Kubernetes pod; {fix}"
                ),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer: {0}")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn the_root_cause_is_the_innermost_error_only() {
        let e = Outer(std::io::Error::new(std::io::ErrorKind::NotFound, "gone"));
        assert_eq!(crate::error_text::root_cause(&e), "gone");
    }

    #[tokio::test]
    async fn a_missing_kubeconfig_file_is_one_sentence_with_the_fix() {
        let e = config_for(&Connection::Kubeconfig {
            path: Some(PathBuf::from("/nonexistent/kubeconfig")),
            context: None,
        })
        .await
        .unwrap_err();
        let text = format!("{e:#}");
        assert_eq!(
            text,
            "cannot read kubeconfig /nonexistent/kubeconfig: No such file or directory (os error 2); give the path of an existing kubeconfig file"
        );
    }
}
