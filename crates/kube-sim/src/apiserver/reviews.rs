//! Answers to the requests a real server computes instead of storing: access reviews
//! (`kubectl auth can-i`), rules reviews (`can-i --list`), the caller's identity
//! (`kubectl auth whoami`), token reviews, and ServiceAccount tokens (`kubectl create
//! token`). The simulator has no authentication or authorization, so every caller is
//! an administrator and every access review says yes; tokens are signed with a key
//! of this process so that a token review can tell its own tokens from others.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::apiserver::api_error::ApiError;
use crate::apiserver::kinds::ResourceType;

/// Why every access review is allowed, as the review's `status.reason` says.
const ALLOWED_REASON: &str = "the simulated cluster has no authorization: every request is allowed";

/// Who every caller is: the simulator accepts any credentials as the administrator,
/// as a kubeconfig for a real cluster's admin is.
const USERNAME: &str = "admin";
const GROUPS: [&str; 2] = ["system:masters", "system:authenticated"];

/// The audience a token gets when the request names none, as a real server's
/// default `--api-audiences`.
const DEFAULT_AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";

/// The answer to a create of a review kind (`rt.create_only`): the request echoed
/// with the `status` a real server fills in.
pub fn answer(rt: &ResourceType, ns: Option<&str>, mut body: Value) -> Result<Value, ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    let kind = body["kind"].as_str().unwrap_or("");
    if !kind.is_empty() && kind != rt.kind {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            rt.kind
        )));
    }
    body["kind"] = json!(rt.kind);
    body["apiVersion"] = json!(rt.api_version());
    if body.get("metadata").is_none_or(|m| !m.is_object()) {
        body["metadata"] = json!({});
    }
    if let Some(ns) = ns {
        // A LocalSubjectAccessReview is about its own namespace.
        body["spec"]["resourceAttributes"]["namespace"] = json!(ns);
    }
    body["status"] = match rt.kind.as_str() {
        "SelfSubjectAccessReview" | "SubjectAccessReview" | "LocalSubjectAccessReview" => {
            json!({"allowed": true, "reason": ALLOWED_REASON})
        }
        "SelfSubjectRulesReview" => json!({
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": false,
        }),
        "SelfSubjectReview" => json!({"userInfo": {"username": USERNAME, "groups": GROUPS}}),
        "TokenReview" => review_token(
            body["spec"]["token"].as_str().unwrap_or(""),
            &body["spec"]["audiences"],
        ),
        other => {
            return Err(ApiError::method_not_allowed("POST", other));
        }
    };
    Ok(body)
}

fn key() -> &'static [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    KEY.get_or_init(rand::random)
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn sign(input: &str) -> Vec<u8> {
    // A 32-byte key is always a valid HMAC key.
    let mut mac = Hmac::<Sha256>::new_from_slice(key()).expect("any key length");
    mac.update(input.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The TokenRequest answer for ServiceAccount `sa` (its stored object): a JWT
/// naming the account, for the audiences and lifetime the request asks.
pub fn token(sa: &Value, request: &Value) -> Result<Value, ApiError> {
    let ns = sa["metadata"]["namespace"].as_str().unwrap_or("");
    let name = sa["metadata"]["name"].as_str().unwrap_or("");
    let spec = &request["spec"];
    let seconds = spec["expirationSeconds"].as_i64().unwrap_or(3600);
    if seconds < 600 {
        return Err(ApiError::invalid(
            "TokenRequest",
            "authentication.k8s.io",
            name,
            vec![(
                "spec.expirationSeconds".into(),
                format!(
                    "Invalid value: {seconds}: may not specify a duration less than 10 minutes"
                ),
            )],
        ));
    }
    let audiences: Vec<Value> = match spec["audiences"].as_array() {
        Some(a) if !a.is_empty() => a.clone(),
        _ => vec![json!(DEFAULT_AUDIENCE)],
    };
    let now = SystemTime::now();
    let iat = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let exp = now + Duration::from_secs(seconds as u64);
    let claims = json!({
        "aud": audiences,
        "exp": iat + seconds as u64,
        "iat": iat,
        "nbf": iat,
        "iss": DEFAULT_AUDIENCE,
        "jti": format!("{:032x}", rand::random::<u128>()),
        "kubernetes.io": {"namespace": ns,
            "serviceaccount": {"name": name, "uid": sa["metadata"]["uid"]}},
        "sub": format!("system:serviceaccount:{ns}:{name}"),
    });
    let header = b64(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = b64(&serde_json::to_vec(&claims).unwrap_or_default());
    let signed = format!("{header}.{payload}");
    let jwt = format!("{signed}.{}", b64(&sign(&signed)));
    let mut req_spec = json!({"audiences": audiences, "expirationSeconds": seconds});
    if !spec["boundObjectRef"].is_null() {
        req_spec["boundObjectRef"] = spec["boundObjectRef"].clone();
    }
    Ok(json!({
        "kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": rfc3339(now)},
        "spec": req_spec,
        "status": {"token": jwt, "expirationTimestamp": rfc3339(exp)},
    }))
}

/// A TokenReview's status: authenticated for a token this process issued that has
/// not expired and names one of `audiences` (any, when none are asked for).
fn review_token(token: &str, audiences: &Value) -> Value {
    let unauthenticated = |why: &str| json!({"authenticated": false, "error": why, "user": {}});
    let mut parts = token.rsplitn(2, '.');
    let (Some(sig), Some(signed)) = (parts.next(), parts.next()) else {
        return unauthenticated("invalid bearer token");
    };
    let good = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(sig)
        .is_ok_and(|s| s == sign(signed));
    let claims: Option<Value> = signed
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|b| serde_json::from_slice(&b).ok());
    let Some(claims) = claims.filter(|_| good) else {
        return unauthenticated("invalid bearer token");
    };
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    if claims["exp"].as_u64().is_none_or(|exp| exp < now) {
        return unauthenticated("invalid bearer token, token has expired");
    }
    let token_aud: Vec<&Value> = claims["aud"].as_array().into_iter().flatten().collect();
    let wanted: Vec<&Value> = audiences.as_array().into_iter().flatten().collect();
    let matched: Vec<&&Value> = if wanted.is_empty() {
        token_aud.iter().collect()
    } else {
        token_aud.iter().filter(|a| wanted.contains(a)).collect()
    };
    if matched.is_empty() {
        return unauthenticated("invalid bearer token, token audiences are invalid");
    }
    let ns = claims["kubernetes.io"]["namespace"].as_str().unwrap_or("");
    json!({
        "authenticated": true,
        "audiences": matched,
        "user": {
            "username": claims["sub"],
            "uid": claims["kubernetes.io"]["serviceaccount"]["uid"],
            "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{ns}"),
                "system:authenticated"],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::kinds::Registry;

    fn review_type(kind: &str) -> ResourceType {
        let registry = Registry::builtin();
        registry.all().find(|t| t.kind == kind).cloned().unwrap()
    }

    #[test]
    fn every_access_review_is_allowed() {
        let rt = review_type("SelfSubjectAccessReview");
        let body = json!({"spec": {"resourceAttributes": {"verb": "delete", "resource": "nodes"}}});
        let answer = answer(&rt, None, body).unwrap();
        assert_eq!(answer["status"]["allowed"], true);
        assert_eq!(answer["spec"]["resourceAttributes"]["verb"], "delete");
        assert_eq!(answer["apiVersion"], "authorization.k8s.io/v1");
    }

    #[test]
    fn a_token_the_simulator_issued_passes_a_token_review_until_it_is_tampered_with() {
        let sa = json!({"metadata": {"name": "bot", "namespace": "shop", "uid": "u-1"}});
        let issued = token(&sa, &json!({"spec": {"audiences": ["api"]}})).unwrap();
        let jwt = issued["status"]["token"].as_str().unwrap().to_string();
        let rt = review_type("TokenReview");
        let ok = answer(&rt, None, json!({"spec": {"token": jwt}})).unwrap();
        assert_eq!(ok["status"]["authenticated"], true);
        assert_eq!(
            ok["status"]["user"]["username"],
            "system:serviceaccount:shop:bot"
        );
        let other_audience = answer(
            &rt,
            None,
            json!({"spec": {"token": jwt, "audiences": ["x"]}}),
        )
        .unwrap();
        assert_eq!(other_audience["status"]["authenticated"], false);
        let tampered = format!("{jwt}x");
        let bad = answer(&rt, None, json!({"spec": {"token": tampered}})).unwrap();
        assert_eq!(bad["status"]["authenticated"], false);
    }

    #[test]
    fn a_token_shorter_than_ten_minutes_is_refused_as_a_real_server_does() {
        let sa = json!({"metadata": {"name": "bot", "namespace": "shop"}});
        let err = token(&sa, &json!({"spec": {"expirationSeconds": 60}})).unwrap_err();
        assert_eq!(err.code, 422);
        assert!(
            err.message
                .contains("may not specify a duration less than 10 minutes"),
            "{}",
            err.message
        );
    }
}
