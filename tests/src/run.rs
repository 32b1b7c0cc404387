//! Running child processes and turning their failures into readable panics.
//!
//! Example: `run_ok(root.lifeboat().arg("backup"))` returns stdout, or panics with
//! `command failed: /tmp/lifeboat-test-…/bin/lifeboat backup (exit status: 1)` followed by the
//! command's stdout and stderr.
//!
//! Invariant: a failing command is never silent: its full output is in the panic message.

use std::process::{Command, Output};

/// The command line of `cmd`, for messages.
pub fn describe(cmd: &Command) -> String {
    let mut line = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

/// Runs `cmd` to completion with stdout and stderr captured; panics only if it cannot start.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", describe(cmd)))
}

/// Runs `cmd` and returns its stdout; panics with its output if it fails.
#[track_caller]
pub fn run_ok(cmd: &mut Command) -> String {
    let output = run(cmd);
    if !output.status.success() {
        panic!("{}", failure_report(cmd, &output));
    }
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A multi-line report of a failed command: its line, exit status, stdout and stderr.
pub(crate) fn failure_report(cmd: &Command, output: &Output) -> String {
    let mut report = format!("command failed: {} ({})", describe(cmd), output.status);
    for (name, bytes) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
        let text = String::from_utf8_lossy(bytes);
        if !text.trim().is_empty() {
            report.push_str(&format!("\n--- {name} ---\n{}", text.trim_end()));
        }
    }
    report
}
