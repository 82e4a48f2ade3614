//! A client for Prometheus' HTTP API, for the analysis of a bake (DESIGN §4.7): one
//! instant query (`POST /api/v1/query`) per measurement, answered by one number, no
//! data, or an error. It goes through the same HTTP stack as the Kubernetes clients
//! (kube's client, OpenSSL TLS), with the agent config's credentials, CA and timeout.
//!
//! What an answer means:
//! - an instant vector of one sample, or a scalar: its value (`+Inf` and `-Inf`
//!   included, compared with the bounds later);
//! - an empty vector, or the value NaN: no data (NaN is never a pass: `0/0` is what an
//!   error ratio gives with no traffic at all);
//! - several series, a range vector or a string: an error naming what to change (the
//!   query must aggregate to one number);
//! - an error answer, a timeout, a refused connection: an error.
//!
//! Retries: a measurement tries up to [`ATTEMPTS`] times on a connection failure, a
//! timeout, 429 or 5xx (not on a bad query), each attempt bounded by the configured
//! timeout; when every attempt failed the measurement is one query error, which the
//! analysis counts against `errorLimit`.

use std::path::PathBuf;
use std::time::Duration;

use axum::http::{HeaderValue, Request, header};
use serde::Deserialize;

use crate::plan::analysis::Measurement;
use crate::source::Secret;

/// Attempts per measurement.
pub const ATTEMPTS: u32 = 3;

/// Pause between attempts (doubled each time).
const RETRY_BASE: Duration = Duration::from_millis(200);

/// Largest answer read: one number needs little; a query that matches thousands of
/// series is refused rather than buffered.
const MAX_ANSWER: usize = 4 * 1024 * 1024;

/// How the agent authenticates to Prometheus.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PrometheusAuth {
    /// No credentials.
    #[default]
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(Secret),
    /// HTTP basic authentication.
    Basic {
        /// The user.
        username: String,
        /// The password.
        password: Secret,
    },
}

/// Where an agent's (or one cluster's) Prometheus is, from the agent config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrometheusConfig {
    /// Base URL (`http://prometheus.monitoring:9090`, a path prefix allowed).
    pub url: String,
    /// Credentials.
    pub auth: PrometheusAuth,
    /// Bound of each attempt (connect, send, answer).
    pub timeout: Duration,
    /// PEM file of the CA that signed Prometheus' certificate (default: the system's).
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate (testing only).
    pub insecure_skip_verify: bool,
}

/// The default of [`PrometheusConfig::timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a Prometheus client could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PrometheusError {
    /// The URL does not parse.
    #[error("prometheus url '{url}': {message}")]
    Url {
        /// The URL.
        url: String,
        /// Why.
        message: String,
    },
    /// A secret could not be read.
    #[error("prometheus auth: {0}")]
    Secret(String),
    /// The CA file could not be read or holds no certificate.
    #[error("prometheus tls.caFile {path}: {message}")]
    Ca {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// The HTTP client could not be built.
    #[error("prometheus client: {0}")]
    Client(String),
}

/// A Prometheus to query.
#[derive(Clone)]
pub struct Prometheus {
    client: kube::Client,
    authorization: Option<HeaderValue>,
    timeout: Duration,
    url: String,
}

impl std::fmt::Debug for Prometheus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Prometheus({})", self.url)
    }
}

/// DER certificates from a PEM file's text.
fn pem_certificates(text: &str) -> Vec<Vec<u8>> {
    use base64::Engine as _;
    let mut out = Vec::new();
    let mut body: Option<String> = None;
    for line in text.lines().map(str::trim) {
        if line.starts_with("-----BEGIN CERTIFICATE") {
            body = Some(String::new());
        } else if line.starts_with("-----END CERTIFICATE") {
            if let Some(b) = body.take()
                && let Ok(der) = base64::engine::general_purpose::STANDARD.decode(b)
            {
                out.push(der);
            }
        } else if let Some(b) = body.as_mut() {
            b.push_str(line);
        }
    }
    out
}

impl Prometheus {
    /// A client for `config`; secrets and the CA file are read now, so a missing one
    /// stops the agent at start-up rather than failing every measurement.
    pub fn new(config: &PrometheusConfig) -> Result<Prometheus, PrometheusError> {
        let url = config.url.trim_end_matches('/').to_string();
        let uri: axum::http::Uri = url.parse().map_err(|e| PrometheusError::Url {
            url: url.clone(),
            message: format!("{e}"),
        })?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(PrometheusError::Url {
                url,
                message: "must be an http:// or https:// URL with a host".into(),
            });
        }
        let mut kc = kube::Config::new(uri);
        kc.connect_timeout = Some(config.timeout);
        kc.read_timeout = Some(config.timeout);
        kc.write_timeout = Some(config.timeout);
        kc.reset_reader_on_write = true;
        kc.default_retry = false;
        kc.accept_invalid_certs = config.insecure_skip_verify;
        if let Some(path) = &config.ca_file {
            let ca = |message: String| PrometheusError::Ca {
                path: path.display().to_string(),
                message,
            };
            let text = std::fs::read_to_string(path).map_err(|e| ca(e.to_string()))?;
            let certs = pem_certificates(&text);
            if certs.is_empty() {
                return Err(ca("no PEM certificate in the file".into()));
            }
            kc.root_cert = Some(certs);
        }
        let secret = |s: &Secret| {
            s.read()
                .map_err(|e| PrometheusError::Secret(e.to_string()))
                .and_then(|v| {
                    if v.trim().is_empty() {
                        Err(PrometheusError::Secret("the secret is empty".into()))
                    } else {
                        Ok(v.trim().to_string())
                    }
                })
        };
        let authorization = match &config.auth {
            PrometheusAuth::None => None,
            PrometheusAuth::Bearer(token) => Some(format!("Bearer {}", secret(token)?)),
            PrometheusAuth::Basic { username, password } => {
                use base64::Engine as _;
                let pair = format!("{username}:{}", secret(password)?);
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                ))
            }
        };
        let authorization = authorization
            .map(|v| {
                HeaderValue::from_str(&v)
                    .map(|mut h| {
                        h.set_sensitive(true);
                        h
                    })
                    .map_err(|_| {
                        PrometheusError::Secret(
                            "the credentials hold characters a header cannot carry".into(),
                        )
                    })
            })
            .transpose()?;
        let client =
            kube::Client::try_from(kc).map_err(|e| PrometheusError::Client(e.to_string()))?;
        Ok(Prometheus {
            client,
            authorization,
            timeout: config.timeout,
            url,
        })
    }

    /// The base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// One measurement: the query, retried on transient failures.
    pub async fn measure(&self, query: &str) -> Measurement {
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(RETRY_BASE * 2u32.pow(attempt - 1)).await;
            }
            match self.attempt(query).await {
                Ok(m) => return m,
                Err(Failure { message, retry }) => {
                    last = message;
                    if !retry {
                        break;
                    }
                }
            }
        }
        Measurement::Error(last)
    }

    async fn attempt(&self, query: &str) -> Result<Measurement, Failure> {
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("query", query)
            .finish();
        let mut request = Request::post("/api/v1/query")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json");
        if let Some(auth) = &self.authorization {
            request = request.header(header::AUTHORIZATION, auth.clone());
        }
        let request = request
            .body(kube::client::Body::from(body.into_bytes()))
            .map_err(|e| Failure::fatal(format!("cannot make the request: {e}")))?;
        let exchange = async {
            let response = self.client.send(request).await.map_err(|e| Failure {
                message: format!("{}: {}", self.url, crate::error_text::chain(&e)),
                retry: true,
            })?;
            let status = response.status().as_u16();
            let bytes = response
                .into_body()
                .collect_bytes()
                .await
                .map_err(|e| Failure {
                    message: format!(
                        "{}: reading the answer: {}",
                        self.url,
                        crate::error_text::chain(&e)
                    ),
                    retry: true,
                })?;
            Ok::<_, Failure>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| Failure {
                message: format!(
                    "{}: no answer within {}",
                    self.url,
                    humantime::format_duration(self.timeout)
                ),
                retry: true,
            })??;
        if bytes.len() > MAX_ANSWER {
            return Err(Failure::fatal(format!(
                "the answer is larger than {} MiB; aggregate the query to one number",
                MAX_ANSWER / 1024 / 1024
            )));
        }
        answer(status, &bytes).map_err(|message| Failure {
            retry: status == 429 || status >= 500,
            message: message.0,
        })
    }
}

struct Failure {
    message: String,
    retry: bool,
}

impl Failure {
    fn fatal(message: String) -> Failure {
        Failure {
            message,
            retry: false,
        }
    }
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

/// A sample value as Prometheus writes it (`"0.31"`, `"NaN"`, `"+Inf"`).
fn sample_value(v: &serde_json::Value) -> Result<f64, String> {
    let text = v
        .get(1)
        .and_then(|s| s.as_str())
        .ok_or_else(|| format!("a sample is not [time, \"value\"]: {v}"))?;
    match text {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        t => t
            .parse::<f64>()
            .map_err(|_| format!("the sample value '{t}' is not a number")),
    }
}

/// Why an answer of Prometheus is not a measurement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AnswerError(pub String);

/// What an answer of `/api/v1/query` (HTTP `status`, `body`) says: a measurement, or
/// why it is not one.
pub fn answer(status: u16, body: &[u8]) -> Result<Measurement, AnswerError> {
    answer_text(status, body).map_err(AnswerError)
}

fn answer_text(status: u16, body: &[u8]) -> Result<Measurement, String> {
    let parsed: Answer = match serde_json::from_slice(body) {
        Ok(a) => a,
        Err(_) => {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).to_string();
            return Err(format!(
                "HTTP {status} that is not a Prometheus answer: {}",
                text.trim()
            ));
        }
    };
    if parsed.status != "success" {
        return Err(format!(
            "HTTP {status}: {}: {}",
            parsed.error_type.as_deref().unwrap_or("error"),
            parsed.error.as_deref().unwrap_or("no reason given")
        ));
    }
    let Some(data) = parsed.data else {
        return Err(format!("HTTP {status}: a success without data"));
    };
    let value = match data.result_type.as_str() {
        "scalar" => sample_value(&data.result)?,
        "vector" => {
            let series = data.result.as_array().cloned().unwrap_or_default();
            match series.as_slice() {
                [] => return Ok(Measurement::NoData),
                [one] => sample_value(&one["value"])?,
                many => {
                    return Err(format!(
                        "the query returned {} series; aggregate it to one number (sum, max, histogram_quantile ...)",
                        many.len()
                    ));
                }
            }
        }
        "matrix" => {
            return Err(
                "the query returned a range vector; an analysis query must give one number (use rate(...[1m]) or an aggregation)".into(),
            );
        }
        other => {
            return Err(format!(
                "the query returned a {other}; an analysis query must give one number"
            ));
        }
    };
    Ok(if value.is_nan() {
        Measurement::NoData
    } else {
        Measurement::Value(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! recorded {
        ($name:literal) => {
            include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/prometheus-responses/",
                $name
            ))
        };
    }

    #[test]
    fn recorded_answers_mean_what_their_names_say() {
        let ok = |status, body: &[u8]| answer(status, body).unwrap();
        assert_eq!(
            ok(200, recorded!("vector-one-sample-is-its-value.json")),
            Measurement::Value(1.0)
        );
        assert_eq!(
            ok(200, recorded!("scalar-is-its-value.json")),
            Measurement::Value(1.0)
        );
        assert_eq!(
            ok(200, recorded!("vector-empty-is-no-data.json")),
            Measurement::NoData
        );
        assert_eq!(
            ok(200, recorded!("scalar-nan-is-no-data.json")),
            Measurement::NoData
        );
        assert_eq!(
            ok(200, recorded!("vector-nan-is-no-data.json")),
            Measurement::NoData
        );
        assert_eq!(
            ok(200, recorded!("vector-inf-is-a-value.json")),
            Measurement::Value(f64::INFINITY)
        );
        assert_eq!(
            answer(200, recorded!("vector-two-series-is-an-error.json"))
                .unwrap_err()
                .0,
            "the query returned 2 series; aggregate it to one number (sum, max, histogram_quantile ...)"
        );
        assert_eq!(
            answer(400, recorded!("bad-query-is-an-error.json"))
                .unwrap_err()
                .0,
            "HTTP 400: bad_data: invalid parameter \"query\": 1:15: parse error: unclosed left parenthesis"
        );
        assert!(
            answer(200, recorded!("matrix-is-an-error.json"))
                .unwrap_err()
                .0
                .contains("range vector")
        );
        assert_eq!(
            answer(503, recorded!("timeout-is-an-error.json"))
                .unwrap_err()
                .0,
            "HTTP 503: timeout: query timed out in expression evaluation"
        );
        assert_eq!(
            answer(502, b"<html>Bad Gateway</html>").unwrap_err().0,
            "HTTP 502 that is not a Prometheus answer: <html>Bad Gateway</html>"
        );
    }

    #[test]
    fn pem_certificates_are_decoded() {
        let pem = "junk\n-----BEGIN CERTIFICATE-----\nAAEC\nAwQ=\n-----END CERTIFICATE-----\n";
        assert_eq!(pem_certificates(pem), vec![vec![0, 1, 2, 3, 4]]);
    }

    #[test]
    fn a_url_that_is_not_http_is_refused() {
        let config = PrometheusConfig {
            url: "prometheus:9090".into(),
            auth: PrometheusAuth::None,
            timeout: DEFAULT_TIMEOUT,
            ca_file: None,
            insecure_skip_verify: false,
        };
        let e = Prometheus::new(&config).unwrap_err().to_string();
        assert!(e.starts_with("prometheus url 'prometheus:9090'"), "{e}");
    }

    #[tokio::test]
    async fn an_unreachable_prometheus_is_an_error_after_the_retries() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let p = Prometheus::new(&PrometheusConfig {
            url: format!("http://127.0.0.1:{port}"),
            auth: PrometheusAuth::Bearer(Secret::Value("t".into())),
            timeout: Duration::from_secs(1),
            ca_file: None,
            insecure_skip_verify: false,
        })
        .unwrap();
        let started = std::time::Instant::now();
        match p.measure("up").await {
            Measurement::Error(e) => {
                assert!(e.starts_with(&format!("http://127.0.0.1:{port}")), "{e}")
            }
            other => panic!("{other:?}"),
        }
        assert!(
            started.elapsed() >= RETRY_BASE * 3,
            "{ATTEMPTS} attempts with pauses"
        );
    }

    /// A stand-in Prometheus answering with `body` (after `delay`), recording requests.
    async fn fake(
        status: u16,
        body: &'static [u8],
        delay: Duration,
    ) -> (
        String,
        std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
    ) {
        use axum::routing::post;
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        let app = axum::Router::new().route(
            "/prefix/api/v1/query",
            post(move |headers: axum::http::HeaderMap, form: String| {
                let log = log.clone();
                async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    log.lock().unwrap().push((auth, form));
                    tokio::time::sleep(delay).await;
                    (
                        axum::http::StatusCode::from_u16(status).unwrap(),
                        body.to_vec(),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/prefix", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, seen)
    }

    fn config(url: &str, auth: PrometheusAuth, timeout: Duration) -> PrometheusConfig {
        PrometheusConfig {
            url: url.into(),
            auth,
            timeout,
            ca_file: None,
            insecure_skip_verify: false,
        }
    }

    #[tokio::test]
    async fn a_query_is_posted_with_the_credentials_under_the_url_prefix() {
        let (url, seen) = fake(
            200,
            recorded!("vector-one-sample-is-its-value.json"),
            Duration::ZERO,
        )
        .await;
        let basic = PrometheusAuth::Basic {
            username: "rollwave".into(),
            password: Secret::Value("pw".into()),
        };
        let p = Prometheus::new(&config(&url, basic, Duration::from_secs(5))).unwrap();
        assert_eq!(
            p.measure("sum(rate(x{a=\"b\"}[1m]))").await,
            Measurement::Value(1.0)
        );
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            vec![(
                "Basic cm9sbHdhdmU6cHc=".to_string(),
                "query=sum%28rate%28x%7Ba%3D%22b%22%7D%5B1m%5D%29%29".to_string()
            )]
        );
    }

    #[tokio::test]
    async fn a_bad_query_is_not_retried_and_a_slow_answer_times_out_after_the_retries() {
        let (url, seen) = fake(400, recorded!("bad-query-is-an-error.json"), Duration::ZERO).await;
        let bearer = PrometheusAuth::Bearer(Secret::Value("tok".into()));
        let p = Prometheus::new(&config(&url, bearer, Duration::from_secs(5))).unwrap();
        let m = p.measure("sum(rate(x[1m]").await;
        assert!(
            matches!(&m, Measurement::Error(e) if e.contains("bad_data")),
            "{m:?}"
        );
        assert_eq!(seen.lock().unwrap().len(), 1, "not retried");
        assert_eq!(seen.lock().unwrap()[0].0, "Bearer tok");

        let (url, seen) = fake(
            200,
            recorded!("vector-one-sample-is-its-value.json"),
            Duration::from_secs(3),
        )
        .await;
        let p = Prometheus::new(&config(
            &url,
            PrometheusAuth::None,
            Duration::from_millis(300),
        ))
        .unwrap();
        match p.measure("up").await {
            Measurement::Error(e) => assert!(e.ends_with("no answer within 300ms"), "{e}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(seen.lock().unwrap().len() as u32, ATTEMPTS);
    }
}
