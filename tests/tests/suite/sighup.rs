//! SIGHUP reloads the register at once. The signal goes to the whole test
//! process, so every collector running in it reloads too: harmless, since a
//! reload only reads again files that did not change.

use std::time::Duration;

use anyhow::Result;
use campanile_tests::planted::write;
use campanile_tests::{TestCollector, TestPki, eventually, sample};

const REGISTER: &str = "[[comune]]\nistat_code = \"999001\"\nname = \"Uno\"\n\
    [[site]]\nid = \"uno\"\ncomune = \"999001\"\nname = \"Municipio\"\n";

#[tokio::test]
async fn sighup_reloads_the_register_without_waiting_for_the_file_check() -> Result<()> {
    let pki = TestPki::new()?;
    let register = write(pki.path(), "register.toml", REGISTER)?;
    // The file check is an hour away: only the signal can reload in time.
    let c = TestCollector::start_with(
        &pki,
        &format!(
            "[territory]\nregister_path = \"{}\"\nreload_check_secs = 3600\n",
            register.display()
        ),
    )
    .await?;
    let assets = |t: &str| sample(t, r#"campanile_register_entries{kind="assets"}"#);
    assert_eq!(assets(&c.metrics().await?), Some(0.0));

    std::fs::write(
        &register,
        format!("{REGISTER}[[asset]]\nsite = \"uno\"\nhostname = \"pc1\"\n"),
    )?;
    let status = std::process::Command::new("sh")
        .args(["-c", &format!("kill -HUP {}", std::process::id())])
        .status()?;
    assert!(status.success());
    eventually(Duration::from_secs(20), "the SIGHUP reload", || async {
        (assets(&c.metrics().await.ok()?) == Some(1.0)).then_some(())
    })
    .await?;
    c.stop().await?;
    Ok(())
}
