//! docs/reference/cli.md is assembled from the binaries' own `--help`, so the reference can
//! never drift from the code. Regenerate with
//! `CAIRN_BLESS=1 cargo test -p cairn-tests --test cli_reference`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::process::Command;

use cairn_tests::{bin, run, workspace_root};

fn help(program: &str, args: &[&str]) -> String {
    let out = run(Command::new(bin(program))
        .args(args)
        .arg("--help")
        .env("COLUMNS", "100"));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_cli_reference_in_docs_is_current() {
    let sections = [
        ("cairn", vec![]),
        ("cairn", vec!["peer"]),
        ("cairn", vec!["peer", "probe"]),
        ("cairn", vec!["peer", "detach"]),
        ("cairn", vec!["pool"]),
        ("cairn", vec!["volume"]),
        ("cairn", vec!["volume", "create"]),
        ("cairn", vec!["volume", "start"]),
        ("cairn", vec!["volume", "stop"]),
        ("cairn", vec!["volume", "delete"]),
        ("cairn", vec!["volume", "info"]),
        ("cairn", vec!["volume", "status"]),
        ("cairn", vec!["volume", "set"]),
        ("cairn", vec!["volume", "get"]),
        ("cairn", vec!["volume", "reset"]),
        ("cairn", vec!["volume", "heal"]),
        ("cairn", vec!["volume", "add-brick"]),
        ("cairn", vec!["volume", "remove-brick"]),
        ("cairn", vec!["volume", "rebalance"]),
        ("cairn", vec!["volume", "replace-brick"]),
        ("cairn", vec!["volume", "reset-brick"]),
        ("cairn", vec!["mount"]),
        ("cairnd", vec![]),
        ("cairn-brickd", vec![]),
    ];
    let mut doc = String::from(
        "# Command reference\n\nGenerated from each command's `--help` by `tests/tests/cli_reference.rs`; \
         do not edit by hand. Regenerate with `CAIRN_BLESS=1 cargo test -p cairn-tests --test cli_reference`.\n\n\
         Exit codes, for every command: `0` success, `1` the operation failed (the message says why), \
         `2` the command line is wrong.\n",
    );
    for (program, args) in sections {
        let title = std::iter::once(program)
            .chain(args.iter().copied())
            .collect::<Vec<_>>()
            .join(" ");
        doc.push_str(&format!(
            "\n## `{title}`\n\n```text\n{}```\n",
            help(program, &args)
        ));
    }
    let path = workspace_root().join("docs/reference/cli.md");
    if std::env::var_os("CAIRN_BLESS").is_some() {
        fs::write(&path, &doc).unwrap();
    }
    let on_disk = fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == doc,
        "{} is stale: regenerate it with CAIRN_BLESS=1 cargo test -p cairn-tests --test cli_reference",
        path.display()
    );
}

#[test]
fn bad_arguments_exit_2_with_a_message() {
    for (program, args) in [
        ("cairn", vec!["mount"]),
        (
            "cairn",
            vec![
                "mount",
                "--volfile",
                "x",
                "/mnt",
                "-o",
                "entry-timeout=banana",
            ],
        ),
        ("cairn", vec!["frobnicate"]),
        ("cairn-brickd", vec!["--listen", "127.0.0.1:0"]),
        ("cairn-brickd", vec!["--volfile", "x", "--directory", "/d"]),
    ] {
        let out = Command::new(bin(program)).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{program} {args:?}");
        assert!(!out.stderr.is_empty(), "{program} {args:?} says why");
    }
}
