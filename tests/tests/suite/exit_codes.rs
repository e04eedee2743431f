//! The collector binary's exit codes: 2 and one line naming the file and
//! the field (or line) for input the operator must fix, 1 for a failure at
//! run time.

use std::process::Output;

use anyhow::{Context, Result};
use campanile_tests::TestPki;
use campanile_tests::planted::write;

fn collector(args: &[&std::ffi::OsStr]) -> Result<Output> {
    std::process::Command::new(campanile_tests::collector_binary()?)
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .context("run the collector")
}

fn refusal_line(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    lines[0].to_owned()
}

fn config_with(pki: &TestPki, extra: &str) -> Result<std::path::PathBuf> {
    let db = pki.path().join("c.db");
    let text = pki.collector_toml(&db, 0, 0, extra);
    write(pki.path(), "collector.toml", &text)
}

#[test]
fn a_config_with_a_bad_field_exits_2_naming_the_file_and_the_field() -> Result<()> {
    let pki = TestPki::new()?;
    let cfg = config_with(&pki, "[territory.hardware]\nnearly_full_percent = 150\n")?;
    for cmd in ["check-config", "run"] {
        let args: Vec<&std::ffi::OsStr> = if cmd == "run" {
            vec!["run".as_ref(), "--config".as_ref(), cfg.as_os_str()]
        } else {
            vec![cmd.as_ref(), cfg.as_os_str()]
        };
        let out = collector(&args)?;
        assert_eq!(out.status.code(), Some(2), "{cmd}: {out:?}");
        let line = refusal_line(&out);
        assert!(line.contains("collector.toml"), "{cmd}: {line}");
        assert!(
            line.contains("territory.hardware.nearly_full_percent"),
            "{cmd}: {line}"
        );
    }
    Ok(())
}

#[test]
fn a_register_that_does_not_load_exits_2_naming_its_line() -> Result<()> {
    let pki = TestPki::new()?;
    let register = write(pki.path(), "register.toml", "[[comune]]\nistat_code = 1\n")?;
    let cfg = config_with(
        &pki,
        &format!("[territory]\nregister_path = \"{}\"\n", register.display()),
    )?;
    let run = collector(&["run".as_ref(), "--config".as_ref(), cfg.as_os_str()])?;
    let check = collector(&["register".as_ref(), "check".as_ref(), register.as_os_str()])?;
    for (what, out) in [("run", run), ("register check", check)] {
        assert_eq!(out.status.code(), Some(2), "{what}: {out:?}");
        let line = refusal_line(&out);
        assert!(
            line.contains("register.toml") && line.contains("line"),
            "{what}: {line}"
        );
    }
    Ok(())
}

#[test]
fn a_port_already_taken_is_a_failure_at_run_time_and_exits_1() -> Result<()> {
    let pki = TestPki::new()?;
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let db = pki.path().join("c.db");
    let text = pki.collector_toml(&db, taken.local_addr()?.port(), 0, "");
    let cfg = write(pki.path(), "collector.toml", &text)?;
    let out = collector(&["run".as_ref(), "--config".as_ref(), cfg.as_os_str()])?;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot listen"),
        "{out:?}"
    );
    Ok(())
}
