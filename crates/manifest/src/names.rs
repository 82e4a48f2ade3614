//! Kubernetes' name syntax (apimachinery's validation): DNS labels and subdomains,
//! label keys and values. Shared by the fleet model, which refuses names a cluster
//! would refuse before anything is applied, and the simulated API server.

/// An RFC 1123 label (namespaces, Service names): at most 63 lower-case
/// alphanumerics or '-', starting and ending alphanumeric.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// An RFC 1123 subdomain (most object names): dot-separated labels, at most 253.
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// The name part of a qualified name: at most 63 alphanumerics, '-', '_' or '.',
/// starting and ending alphanumeric.
fn is_qualified_name_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

/// A label key: an optional DNS-subdomain prefix and '/', then a name part.
pub fn is_label_key(s: &str) -> bool {
    match s.split_once('/') {
        Some((prefix, name)) => {
            !prefix.is_empty() && is_dns_subdomain(prefix) && is_qualified_name_part(name)
        }
        None => is_qualified_name_part(s),
    }
}

/// A label value: empty, or a name part.
pub fn is_label_value(s: &str) -> bool {
    s.is_empty() || is_qualified_name_part(s)
}

/// Why a label key or value is not valid, for messages; `None` when both are.
pub fn label_problem(key: &str, value: &str) -> Option<String> {
    if !is_label_key(key) {
        return Some(format!(
            "label key '{key}' is not valid: an optional DNS prefix and '/', then at most 63 \
             alphanumerics, '-', '_' or '.', starting and ending alphanumeric"
        ));
    }
    if !is_label_value(value) {
        return Some(format!(
            "label value '{value}' of '{key}' is not valid: empty, or at most 63 alphanumerics, \
             '-', '_' or '.', starting and ending alphanumeric"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_kubernetes_rules() {
        assert!(is_dns_label("web-1"));
        assert!(!is_dns_label("Not_A/Valid..Namespace"));
        assert!(!is_dns_label(&"a".repeat(64)));
        assert!(!is_dns_label("-web"));
        assert!(is_dns_subdomain("a.b-c.d"));
        assert!(!is_dns_subdomain("a..b"));
        assert!(is_label_key("app.kubernetes.io/name"));
        assert!(is_label_key("Region_1"));
        assert!(!is_label_key("/name"));
        assert!(!is_label_key("a/b/c"));
        assert!(!is_label_key("-x"));
        assert!(is_label_value(""));
        assert!(is_label_value("v1.2_3"));
        assert!(!is_label_value("has space"));
        assert!(!is_label_value(&"v".repeat(64)));
    }
}
