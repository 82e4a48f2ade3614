//! The webhook's signature check on any headers and body: a yes or a no, never a
//! panic; and a body signed with a key other than the secret is never accepted.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use rollwave::source::trigger::{WebhookSecrets, verify_webhook};

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |b| *b == 0);
    let signature = parts.next().unwrap_or_default();
    let token = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(signature) {
        headers.insert(HeaderName::from_static("x-hub-signature-256"), v);
    }
    if let Ok(v) = HeaderValue::from_bytes(token) {
        headers.insert(HeaderName::from_static("x-gitlab-token"), v);
    }
    let secrets = WebhookSecrets {
        github: Some("the-github-secret".into()),
        gitlab: Some("the-gitlab-token".into()),
    };
    let accepted = verify_webhook(&secrets, &headers, body);
    if accepted {
        // Only the real token or a real signature can get in.
        let by_token = token == b"the-gitlab-token";
        assert!(
            by_token || signature.starts_with(b"sha256="),
            "accepted without a secret"
        );
    }
});
