//! Edits of the fleet's files that rollwave itself writes as commits (`rollwave
//! pause`, `resume`, `freeze`, `unfreeze`): line-based, so the rest of the file
//! (comments, order, style) stays as its authors wrote it. Pure: text in, text out.

/// Top-level keys of app.yaml that [`set_paused`] owns.
const PAUSE_KEYS: [&str; 2] = ["paused:", "pauseReason:"];

/// `app_yaml` with the app paused for `reason` (`Some`) or resumed (`None`): any
/// top-level `paused` and `pauseReason` lines are removed, and when pausing, the two
/// are appended at the end (the reason as a YAML double-quoted string, which JSON's
/// quoting is).
pub fn set_paused(app_yaml: &str, reason: Option<&str>) -> String {
    let mut out: String = app_yaml
        .lines()
        .filter(|l| !PAUSE_KEYS.iter().any(|k| l.starts_with(k)))
        .map(|l| format!("{l}\n"))
        .collect();
    if let Some(reason) = reason {
        let quoted = serde_json::Value::String(reason.to_string()).to_string();
        out.push_str(&format!("paused: true\npauseReason: {quoted}\n"));
    }
    out
}

/// What `rollwave freeze` writes into fleet.yaml.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FreezeEntry {
    /// Why.
    pub reason: String,
    /// Who says so.
    pub by: Option<String>,
    /// When it ends by itself (RFC 3339).
    pub until: Option<String>,
    /// Only these stages.
    pub stages: Vec<String>,
    /// Only these apps.
    pub apps: Vec<String>,
}

fn quoted(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// `fleet_yaml` with its top-level `freeze:` block (the key's line and the indented or
/// blank lines under it) replaced by `entry`, appended at the end, or removed (`None`).
pub fn set_freeze(fleet_yaml: &str, entry: Option<&FreezeEntry>) -> String {
    let mut out = String::new();
    let mut in_block = false;
    for line in fleet_yaml.lines() {
        if line.starts_with("freeze:") {
            in_block = true;
            continue;
        }
        if in_block && (line.is_empty() || line.starts_with([' ', '\t'])) {
            continue;
        }
        in_block = false;
        out.push_str(line);
        out.push('\n');
    }
    if let Some(e) = entry {
        let list = |v: &[String]| {
            let items: Vec<String> = v.iter().map(|s| quoted(s)).collect();
            format!("[{}]", items.join(", "))
        };
        out.push_str(&format!("freeze:\n  reason: {}\n", quoted(&e.reason)));
        if let Some(by) = &e.by {
            out.push_str(&format!("  by: {}\n", quoted(by)));
        }
        if let Some(until) = &e.until {
            out.push_str(&format!("  until: {}\n", quoted(until)));
        }
        if !e.stages.is_empty() {
            out.push_str(&format!("  stages: {}\n", list(&e.stages)));
        }
        if !e.apps.is_empty() {
            out.push_str(&format!("  apps: {}\n", list(&e.apps)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pausing_appends_two_lines_and_resuming_takes_them_away_leaving_the_rest() {
        let text = "# the web app\nnamespace: web   # its own\ntargets:\n  stages: [prod]\n";
        let paused = set_paused(text, Some("incident \"4711\": bad: db"));
        assert_eq!(
            paused,
            format!("{text}paused: true\npauseReason: \"incident \\\"4711\\\": bad: db\"\n")
        );
        // Pausing again replaces the reason; resuming restores the file.
        let again = set_paused(&paused, Some("still"));
        assert!(
            again.ends_with("paused: true\npauseReason: \"still\"\n"),
            "{again}"
        );
        assert_eq!(set_paused(&again, None), text);
        // A file without a final newline gets one.
        assert_eq!(set_paused("namespace: web", None), "namespace: web\n");
    }

    #[test]
    fn a_freeze_block_is_written_replaced_and_removed_leaving_the_rest() {
        let text = "stages: [test, prod]\nrollout:\n  bake: 5m\n";
        let entry = FreezeEntry {
            reason: "holiday \"freeze\"".into(),
            by: Some("alice".into()),
            until: Some("2026-12-27T00:00:00Z".into()),
            stages: vec!["prod".into()],
            apps: vec!["web".into(), "api".into()],
        };
        let frozen = set_freeze(text, Some(&entry));
        assert_eq!(
            frozen,
            format!(
                "{text}freeze:\n  reason: \"holiday \\\"freeze\\\"\"\n  by: \"alice\"\n  until: \"2026-12-27T00:00:00Z\"\n  stages: [\"prod\"]\n  apps: [\"web\", \"api\"]\n"
            )
        );
        // A freeze in the middle of the file, with a blank line, is taken out whole.
        let middle = "stages: [prod]\nfreeze:\n  reason: x\n\n  apps: [web]\nvalues: {a: 1}\n";
        assert_eq!(set_freeze(middle, None), "stages: [prod]\nvalues: {a: 1}\n");
        assert_eq!(set_freeze(&frozen, None), text);
    }
}
