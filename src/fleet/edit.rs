//! Edits of the fleet's files that rollwave itself writes as commits (`rollwave pause`
//! and `resume`): line-based, so the rest of the file (comments, order, style) stays
//! as its authors wrote it. Pure: text in, text out.

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
}
