//! `rollwave completions SHELL` and `rollwave man`: generated from the command-line
//! definition, they know every command; bash parses the bash script.

mod common;

use std::process::Command;

const COMMANDS: &[&str] = &[
    "build",
    "render",
    "plan",
    "diff",
    "status",
    "validate",
    "sim",
    "agent",
    "demo",
    "hub",
    "completions",
    "man",
];

#[test]
fn completion_scripts_name_every_command() {
    for (shell, marker) in [
        ("bash", "complete -F _rollwave"),
        ("zsh", "#compdef rollwave"),
        ("fish", "complete -c rollwave"),
    ] {
        let (code, out, err) = common::run_cli(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {err}");
        assert!(out.contains(marker), "{shell}: no {marker:?}:\n{out}");
        for c in COMMANDS {
            assert!(out.contains(c), "{shell}: {c} missing");
        }
    }
    // Options of a command are completed too.
    let (_, fish, _) = common::run_cli(&["completions", "fish"]);
    assert!(fish.contains("-l kubeconfig"), "{fish}");
}

#[test]
fn the_bash_script_parses_and_completes_a_command() {
    let (_, script, _) = common::run_cli(&["completions", "bash"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rollwave.bash");
    std::fs::write(&path, &script).unwrap();
    let parse = Command::new("bash").arg("-n").arg(&path).output().unwrap();
    assert!(
        parse.status.success(),
        "{}",
        String::from_utf8_lossy(&parse.stderr)
    );
    // Source it and ask what `rollwave pl<TAB>` completes to, as bash would.
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {}; COMP_WORDS=(rollwave pl); COMP_CWORD=1; COMP_LINE='rollwave pl'; COMP_POINT=11; _rollwave rollwave pl rollwave; echo \"${{COMPREPLY[@]}}\"",
            path.display()
        ))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "plan",
        "{out:?}"
    );
}

#[test]
fn an_unknown_shell_is_refused_with_the_known_ones() {
    let (code, _, err) = common::run_cli(&["completions", "tcsh"]);
    assert_eq!(code, 2);
    assert!(err.contains("invalid value 'tcsh'"), "{err}");
    assert!(err.contains("bash"), "{err}");
}

#[test]
fn the_manual_page_lists_the_commands_and_one_page_per_command_is_written() {
    let (code, page, err) = common::run_cli(&["man"]);
    assert_eq!(code, 0, "{err}");
    assert!(page.contains(".TH rollwave 1"), "{page}");
    for c in COMMANDS {
        assert!(
            page.contains(&format!("rollwave\\-{c}(1)")),
            "{c} missing:\n{page}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("man1");
    let (code, listed, err) = common::run_cli(&["man", "--dir", out_dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    for c in COMMANDS {
        let file = out_dir.join(format!("rollwave-{c}.1"));
        assert!(
            file.is_file(),
            "{} missing; listed:\n{listed}",
            file.display()
        );
        assert!(listed.contains(file.to_str().unwrap()), "{listed}");
    }
    let plan = std::fs::read_to_string(out_dir.join("rollwave-plan.1")).unwrap();
    assert!(plan.contains("\\-\\-output"), "{plan}");
}
