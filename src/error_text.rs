//! Errors as text for people: an error with its causes on one line. Library errors
//! chain their causes (`source()`), and a log line or a status message needs all of
//! them, as the command line prints them.

use std::error::Error;

/// `e` and its causes on one line, `outer: inner: innermost`; a cause whose text the
/// line already holds is not repeated.
pub fn chain(e: &dyn Error) -> String {
    let mut line = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = c.source();
    }
    line
}

/// The innermost cause of `e`: the one every outer layer repeats in other words.
pub fn root_cause(e: &dyn Error) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("fleet at abc")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("fleet.yaml:3: unknown field")]
    struct Inner;

    #[derive(Debug, thiserror::Error)]
    #[error("wrapped: fleet.yaml:3: unknown field")]
    struct Repeats(#[source] Inner);

    #[test]
    fn causes_follow_the_message_once() {
        assert_eq!(
            chain(&Outer(Inner)),
            "fleet at abc: fleet.yaml:3: unknown field"
        );
        assert_eq!(
            chain(&Repeats(Inner)),
            "wrapped: fleet.yaml:3: unknown field"
        );
        assert_eq!(root_cause(&Outer(Inner)), "fleet.yaml:3: unknown field");
    }
}
