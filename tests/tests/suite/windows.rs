//! The Windows agent as it ships (x86_64-pc-windows-gnu, profile `agent`)
//! under Wine: what it collects there, its delivery over mTLS to a Linux
//! collector, the service under Wine's Service Control Manager, and the
//! MSI's tables. `make msi` builds both into dist/ (CI does, before `make
//! test`; CAMPANILE_WINDOWS_AGENT and CAMPANILE_WINDOWS_MSI may name
//! others); where they or Wine are missing the tests are skipped, and say
//! so.
//!
//! Wine runs the real binary against Wine's own registry, SMBIOS and IP
//! helper, which are built from this Linux machine: its NICs and MACs,
//! `/sys/class/dmi` (absent on this VM), no physical drives, no TPM.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use campanile_tests::{ChildGuard, TestCollector, TestPki, eventually, http_get_with, skipped};

/// What `make msi` put in dist/, unless the environment names another.
fn built(var: &str, file: &str) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../dist")
            .join(file.replace("VERSION", env!("CARGO_PKG_VERSION")))
    })
}

/// A file `make msi` builds, with the tool that runs it, or `None`
/// (skipped) when either is missing.
fn built_with(var: &str, file: &str, tool: &str) -> Option<PathBuf> {
    let path = built(var, file);
    if !path.is_file() {
        skipped(&format!("{} is not built (make msi)", path.display()));
        return None;
    }
    if Command::new(tool).arg("--version").output().is_err() {
        skipped(&format!("{tool} is not installed"));
        return None;
    }
    Some(path)
}

/// The Windows agent, or `None` (skipped) when not built or no Wine.
fn windows_agent() -> Option<PathBuf> {
    built_with(
        "CAMPANILE_WINDOWS_AGENT",
        "campanile-agent-VERSION-x86_64-windows.exe",
        "wine",
    )
}

/// The Wine prefix the cross-check script prepared (it holds the
/// ProcessPrng shim that Wine 8 lacks), unless WINEPREFIX names another.
fn wine_prefix() -> PathBuf {
    std::env::var_os("WINEPREFIX")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("CAMPANILE_XTARGET_HOME")
                .map(PathBuf::from)
                .or_else(|| {
                    std::env::var_os("HOME")
                        .map(|h| PathBuf::from(h).join(".cache/campanile-xtarget"))
                })
                .unwrap_or_default()
                .join("wine")
        })
}

/// `wine` in that prefix, quiet.
fn wine() -> Command {
    let mut c = Command::new("wine");
    c.env("WINEPREFIX", wine_prefix()).env("WINEDEBUG", "-all");
    c
}

fn run_wine(args: &[&str]) -> Result<Output> {
    let out = wine().args(args).stdin(Stdio::null()).output()?;
    Ok(out)
}

/// A Linux path as Wine's Z: drive shows it.
fn win_path(p: &Path) -> String {
    format!("Z:{}", p.display()).replace('/', "\\")
}

/// The MACs of this machine's physical NICs, which Wine's adapters
/// carry. Virtual ones (bridges, veth pairs) are left out: other tests
/// make and remove them while these run.
fn linux_macs() -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/sys/class/net")
        .into_iter()
        .flatten()
        .flatten()
    {
        if !e.path().join("device").exists() {
            continue;
        }
        if let Ok(mac) = std::fs::read_to_string(e.path().join("address")) {
            let mac = mac.trim().to_owned();
            if mac != "00:00:00:00:00:00" && !mac.is_empty() {
                out.push(mac);
            }
        }
    }
    out
}

/// A program registered as installers register one, in Wine's registry.
fn register_test_program() -> Result<()> {
    let key = r"HKLM\Software\Microsoft\Windows\CurrentVersion\Uninstall\CampanileWineTest";
    for (name, value) in [
        ("DisplayName", "Campanile Wine Test"),
        ("DisplayVersion", "1.2.3"),
        ("Publisher", "Comune di Prova"),
        ("InstallDate", "20261201"),
    ] {
        let out = run_wine(&[
            "reg", "add", key, "/v", name, "/t", "REG_SZ", "/d", value, "/f", "/reg:64",
        ])?;
        anyhow::ensure!(out.status.success(), "reg add {name}: {out:?}");
    }
    Ok(())
}

#[test]
fn once_under_wine_reports_the_inventory_wine_provides() -> Result<()> {
    let Some(exe) = windows_agent() else {
        return Ok(());
    };
    register_test_program()?;
    let started = std::time::Instant::now();
    let out = run_wine(&[exe.to_str().context("exe path")?, "once"])?;
    let took = started.elapsed();
    anyhow::ensure!(
        out.status.success(),
        "once failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| String::from_utf8_lossy(&out.stdout).into_owned())?;
    let inv = &report["inventory"];
    eprintln!(
        "once under Wine took {took:?}; inventory: {}",
        serde_json::to_string(inv)?
    );

    assert_eq!(inv["os_name"], "Windows", "{inv}");
    assert!(inv["os_build"].as_u64().is_some_and(|b| b >= 7600), "{inv}");
    assert!(
        inv["os_edition"]
            .as_str()
            .is_some_and(|e| e.starts_with("Windows")),
        "{inv}"
    );
    // MachineGuid, as wineboot wrote it.
    assert_eq!(inv["machine_id"].as_str().map(str::len), Some(36), "{inv}");
    // Wine's adapters are this machine's NICs, with their MACs.
    let macs: Vec<&str> = inv["nics"]["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["mac"].as_str())
        .collect();
    for mac in linux_macs() {
        assert!(macs.contains(&mac.as_str()), "{mac} not in {macs:?}");
    }
    // The software list is read from the registry.
    let packages = inv["packages"]["items"].as_array().context("packages")?;
    let test = packages
        .iter()
        .find(|p| p["name"] == "Campanile Wine Test")
        .with_context(|| format!("test program not in {packages:?}"))?;
    assert_eq!(test["version"], "1.2.3");
    assert_eq!(test["publisher"], "Comune di Prova");
    assert_eq!(test["install_date"], "2026-12-01");
    assert_eq!(test["arch"], "x64");
    // Health: the process count comes from GetPerformanceInfo.
    assert!(
        report["health"]["process_count"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "{report}"
    );
    Ok(())
}

/// The agent's config for the Windows binary: Windows paths into the
/// test's directory.
fn windows_agent_toml(
    pki: &TestPki,
    host: &str,
    site: &str,
    grpc: std::net::SocketAddr,
) -> Result<PathBuf> {
    let (cert, key) = pki.agent(host, site)?;
    let dir = pki.path();
    let text = format!(
        r#"
[identity]
host_id = "{host}"
[collector]
endpoint = "https://127.0.0.1:{port}"
server_name = "localhost"
ca_cert_path = '{ca}'
cert_path = '{cert}'
key_path = '{key}'
[collect]
interval_secs = 2
[spool]
path = '{spool}'
[probes]
enabled = false
"#,
        port = grpc.port(),
        ca = win_path(&dir.join("ca.pem")),
        cert = win_path(&cert),
        key = win_path(&key),
        spool = win_path(&dir.join(format!("spool-{host}.redb"))),
    );
    let path = dir.join(format!("agent-{host}.toml"));
    std::fs::write(&path, text)?;
    Ok(path)
}

const SITE: &str = "wine-municipio";

fn register_planning(mac: &str) -> String {
    format!(
        r#"
[[comune]]
istat_code = "999001"
name = "Borgo Esempio"
[[site]]
id = "{SITE}"
comune = "999001"
name = "Municipio"
kind = "town_hall"
[[asset]]
site = "{SITE}"
role = "pc"
name = "PC anagrafe"
mac = "{mac}"
"#
    )
}

const API_TOKEN: &str = "windows-test-token";

/// The API's token, for the collector's config.
fn api_tokens() -> String {
    format!(
        "[[api.tokens]]\nname = \"test\"\nsha256 = \"{}\"\n",
        campanile_proto::hex(&campanile_proto::sha256(API_TOKEN.as_bytes()))
    )
}

/// A collector whose API the tests may read.
async fn collector(pki: &TestPki, extra: &str) -> Result<TestCollector> {
    TestCollector::start_with(pki, &format!("{extra}\n{}", api_tokens())).await
}

async fn host_json(c: &TestCollector, host: &str) -> Option<serde_json::Value> {
    let url = c.url(&format!("/api/v1/hosts/{host}"));
    let (status, body) = http_get_with(&url, Some(API_TOKEN)).await.ok()?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    (status == 200 && v["inventory"].is_object()).then_some(v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_under_wine_delivers_to_a_linux_collector_and_is_matched_by_mac() -> Result<()> {
    let Some(exe) = windows_agent() else {
        return Ok(());
    };
    let Some(mac) = linux_macs().into_iter().next() else {
        skipped("this machine has no NIC with a MAC for Wine to show");
        return Ok(());
    };
    let pki = TestPki::new()?;
    let register = pki.path().join("register.toml");
    std::fs::write(&register, register_planning(&mac))?;
    let c = collector(
        &pki,
        &format!("[territory]\nregister_path = \"{}\"", register.display()),
    )
    .await?;
    let config = windows_agent_toml(&pki, "pc-wine", SITE, c.running.grpc_addr)?;
    // Its log in a file: a pipe nobody reads would fill and stall it.
    let log = pki.path().join("agent-wine.log");
    let child = wine()
        .args([
            exe.to_str().context("exe")?,
            "run",
            "--config",
            &win_path(&config),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;
    let mut child = ChildGuard(child);
    let host = eventually(
        Duration::from_secs(120),
        "the Windows host's inventory",
        || host_json(&c, "pc-wine"),
    )
    .await;
    let host = match host {
        Ok(h) => h,
        Err(e) => {
            let _ = child.0.kill();
            let said = std::fs::read_to_string(&log).unwrap_or_default();
            anyhow::bail!("{e}: the agent said {said}");
        }
    };
    let inv = &host["inventory"];
    assert_eq!(inv["os_name"], "Windows", "{inv}");
    assert_eq!(host["planned"], true, "matched by MAC {mac}: {host}");
    assert_eq!(host["site"], SITE);
    let metrics = c.metrics().await?;
    assert!(
        metrics.lines().any(|l| l.starts_with("campanile_host_up{")
            && l.contains(r#"host="pc-wine""#)
            && l.ends_with(" 1")),
        "{metrics}"
    );
    c.stop().await?;
    Ok(())
}

/// Wine ends its services once no program is left in the session (the
/// wineserver exits seconds after the last one, and starts them again
/// with the next): a console kept open holds the session while a test
/// needs the service.
struct WineSession(#[allow(dead_code)] ChildGuard);

fn hold_wine_session() -> Result<WineSession> {
    let child = wine()
        .arg("cmd")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    Ok(WineSession(ChildGuard(child)))
}

/// Removes the service however the test ends.
struct InstalledService(PathBuf);

impl Drop for InstalledService {
    fn drop(&mut self) {
        if let Some(exe) = self.0.to_str() {
            let _ = run_wine(&[exe, "service", "uninstall"]);
        }
    }
}

/// The service's log files in the Wine prefix (`%ProgramData%`).
fn service_log() -> String {
    let mut out = String::new();
    for e in std::fs::read_dir(program_data().join("logs"))
        .into_iter()
        .flatten()
        .flatten()
    {
        out.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_installs_starts_delivers_and_stops_under_wine() -> Result<()> {
    let Some(exe) = windows_agent() else {
        return Ok(());
    };
    let _scm = WINE_SCM.lock().await;
    let _session = hold_wine_session()?;
    // Only this run's log is read.
    let _ = std::fs::remove_dir_all(program_data().join("logs"));
    let exe_s = exe.to_str().context("exe")?.to_owned();
    let pki = TestPki::new()?;
    let c = collector(&pki, "").await?;
    let config = windows_agent_toml(&pki, "pc-wine-svc", SITE, c.running.grpc_addr)?;
    let out = run_wine(&[&exe_s, "service", "install", "--config", &win_path(&config)])?;
    anyhow::ensure!(
        out.status.success(),
        "service install: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _installed = InstalledService(exe.clone());
    let out = run_wine(&["net", "start", "CampanileAgent"])?;
    anyhow::ensure!(out.status.success(), "net start: {out:?}");
    let host = eventually(
        Duration::from_secs(120),
        "the service's first report",
        || host_json(&c, "pc-wine-svc"),
    )
    .await
    .with_context(|| format!("service log:\n{}", service_log()))?;
    assert_eq!(host["inventory"]["os_name"], "Windows");
    let out = run_wine(&["net", "stop", "CampanileAgent"])?;
    anyhow::ensure!(out.status.success(), "net stop: {out:?}");
    let log = eventually(
        Duration::from_secs(30),
        "the service's stop in its log",
        || {
            let log = service_log();
            async move { log.contains("agent stopped").then_some(log) }
        },
    )
    .await?;
    assert!(
        log.contains("stop asked by the Service Control Manager"),
        "{log}"
    );
    let out = run_wine(&[&exe_s, "service", "uninstall"])?;
    anyhow::ensure!(out.status.success(), "service uninstall: {out:?}");
    // Gone from the SCM: starting it again fails.
    let out = run_wine(&["net", "start", "CampanileAgent"])?;
    assert!(!out.status.success(), "still installed: {out:?}");
    c.stop().await?;
    Ok(())
}

fn msi() -> Option<PathBuf> {
    built_with(
        "CAMPANILE_WINDOWS_MSI",
        "campanile-agent-VERSION-x64.msi",
        "msiinfo",
    )
}

fn msi_table(msi: &Path, table: &str) -> Result<String> {
    let out = Command::new("msiinfo")
        .arg("export")
        .arg(msi)
        .arg(table)
        .output()?;
    anyhow::ensure!(out.status.success(), "msiinfo export {table}: {out:?}");
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The row of `table` whose first column is `key`, split into columns.
fn msi_row(msi: &Path, table: &str, key: &str) -> Result<Vec<String>> {
    let text = msi_table(msi, table)?;
    // Three header lines (names, types, table and keys), then the rows.
    text.lines()
        .skip(3)
        .map(|l| l.split('\t').map(str::to_owned).collect::<Vec<_>>())
        .find(|cols| cols.first().is_some_and(|c| c == key))
        .with_context(|| format!("no {key} in {table}:\n{text}"))
}

#[test]
fn the_msi_installs_the_agent_its_service_and_takes_collector_and_token() -> Result<()> {
    let Some(msi) = msi() else {
        return Ok(());
    };
    let files = msi_table(&msi, "File")?;
    assert!(files.contains("campanile-agent.exe"), "{files}");
    assert!(files.contains("agent.example.toml"), "{files}");
    // ServiceInstall: Name, DisplayName, ServiceType, StartType,
    // ErrorControl, LoadOrderGroup, Dependencies, StartName, Password,
    // Arguments, Component_, Description.
    let svc = msi_row(&msi, "ServiceInstall", "AgentService")?;
    assert_eq!(svc[1], "CampanileAgent");
    assert_eq!(svc[3], "16", "own process: {svc:?}");
    assert_eq!(svc[4], "2", "automatic start: {svc:?}");
    assert_eq!(svc[8], "LocalSystem", "{svc:?}");
    assert_eq!(
        svc[10],
        r#"service run --config "[CommonAppDataFolder]Campanile\agent.toml""#
    );
    // ServiceControl: started at install, stopped at install and
    // uninstall, removed at uninstall (msidbServiceControlEvent 1|2|32|128).
    let ctl = msi_row(&msi, "ServiceControl", "AgentServiceControl")?;
    assert_eq!(ctl[1], "CampanileAgent");
    assert_eq!(ctl[2], "163", "{ctl:?}");
    // The config is written by the agent itself, deferred, as LocalSystem
    // (18: an installed executable; 0x400 in-script; 0x800 no impersonation).
    let ca = msi_row(&msi, "CustomAction", "WriteConfig")?;
    assert_eq!(ca[1], "3090", "{ca:?}");
    assert!(
        ca[3].starts_with(r#"configure --collector "[COLLECTOR]" --token "[TOKEN]""#),
        "{ca:?}"
    );
    let seq = msi_row(&msi, "InstallExecuteSequence", "WriteConfig")?;
    assert_eq!(seq[1], "COLLECTOR AND NOT REMOVE");
    // Once the agent is installed, before the service starts.
    let at = |action: &str| -> Result<u32> {
        Ok(msi_row(&msi, "InstallExecuteSequence", action)?[2].parse()?)
    };
    let write = at("WriteConfig")?;
    assert!(
        at("InstallFiles")? < write && write < at("StartServices")?,
        "{seq:?}"
    );
    // Properties an unattended install may set, the token kept out of logs.
    let secure = msi_row(&msi, "Property", "SecureCustomProperties")?;
    assert!(secure[1].split(';').any(|p| p == "COLLECTOR"), "{secure:?}");
    assert!(secure[1].split(';').any(|p| p == "TOKEN"), "{secure:?}");
    let hidden = msi_row(&msi, "Property", "MsiHiddenProperties")?;
    assert!(hidden[1].split(';').any(|p| p == "TOKEN"), "{hidden:?}");
    // Upgrades replace older versions of the same product line.
    let upgrade = msi_table(&msi, "Upgrade")?;
    assert!(
        upgrade.contains("{D8EE8370-E61C-4943-B441-84F2DA044D91}"),
        "{upgrade}"
    );
    Ok(())
}

/// One Service Control Manager in the Wine prefix: the tests that install
/// the service take turns.
static WINE_SCM: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The Wine prefix's `%ProgramData%\Campanile`.
fn program_data() -> PathBuf {
    wine_prefix().join("drive_c/ProgramData/Campanile")
}

/// Uninstalls the MSIs however the test ends, so the next run finds a
/// clean Service Control Manager.
struct InstalledMsis(Vec<PathBuf>);

impl Drop for InstalledMsis {
    fn drop(&mut self) {
        for msi in self.0.iter().rev() {
            let _ = run_wine(&["msiexec", "/x", &win_path(msi), "/qn"]);
        }
    }
}

/// The host id `campanile_host_up` shows reporting for `site`.
fn reporting_host(metrics: &str, site: &str) -> Option<String> {
    metrics
        .lines()
        .filter(|l| l.starts_with("campanile_host_up{") && l.ends_with(" 1"))
        .filter(|l| l.contains(&format!(r#"site="{site}""#)))
        .find_map(|l| {
            let rest = l.split(r#"host=""#).nth(1)?;
            Some(rest.split('"').next()?.to_owned())
        })
}

const MSI_SITE: &str = "wine-msi";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_msi_installs_enrolls_upgrades_keeping_its_state_and_uninstalls() -> Result<()> {
    let (Some(exe), Some(msi)) = (windows_agent(), msi()) else {
        return Ok(());
    };
    if Command::new("wixl").arg("--version").output().is_err() {
        skipped("wixl is not installed (the upgrade needs a newer MSI)");
        return Ok(());
    }
    let _scm = WINE_SCM.lock().await;
    let _session = hold_wine_session()?;
    // What an earlier run left must not be taken for this one's.
    let data = program_data();
    let _ = std::fs::remove_dir_all(&data);

    let pki = TestPki::new()?;
    let dir = tempfile::tempdir()?;
    let register = dir.path().join("register.toml");
    std::fs::write(
        &register,
        format!(
            r#"
[[comune]]
istat_code = "999001"
name = "Borgo Esempio"
[[site]]
id = "{MSI_SITE}"
comune = "999001"
name = "Municipio"
kind = "town_hall"
"#
        ),
    )?;
    let sections = format!(
        "[enrollment]\nca_key_path = \"{}\"\n[territory]\nregister_path = \"{}\"\n",
        pki.path().join("ca.key").display(),
        register.display()
    );
    let c = TestCollector::start_with(&pki, &sections).await?;
    let config = dir.path().join("collector.toml");
    c.write_config(&pki, &sections, &config)?;
    let (token, _) = campanile_tests::enroll_new(&config, MSI_SITE, &["--uses", "2"])?;

    let mut installed = InstalledMsis(vec![msi.clone()]);
    // Installed as a GPO would: quiet, with the collector and the token.
    let install_log = dir.path().join("install.log");
    let out = run_wine(&[
        "msiexec",
        "/i",
        &win_path(&msi),
        "/qn",
        &format!("COLLECTOR=127.0.0.1:{}", c.running.grpc_addr.port()),
        &format!("TOKEN={token}"),
        "/l*v",
        &win_path(&install_log),
    ])?;
    let log_text =
        || String::from_utf8_lossy(&std::fs::read(&install_log).unwrap_or_default()).into_owned();
    anyhow::ensure!(out.status.success(), "msiexec /i: {out:?}\n{}", log_text());
    // MsiHiddenProperties keeps the token out of Windows Installer's log
    // (the table test checks it is set); Wine's msiexec ignores it and
    // logs every property, so that cannot be shown here.
    let host = eventually(Duration::from_secs(120), "the enrolled PC's report", || {
        let c = &c;
        async move { reporting_host(&c.metrics().await.ok()?, MSI_SITE) }
    })
    .await
    .with_context(|| format!("service log:\n{}", service_log()))?;
    let cert = std::fs::read(data.join("agent.pem")).context("the enrolled certificate")?;
    let written = std::fs::read_to_string(data.join("agent.toml"))?;
    assert!(
        written.contains(&format!("127.0.0.1:{}", c.running.grpc_addr.port())),
        "{written}"
    );
    assert!(data.join("agent.example.toml").is_file());

    // A newer version over it: the same certificate, still reporting.
    let newer = dir.path().join("campanile-agent-newer.msi");
    // wixl takes sources relative to where it runs: everything it needs
    // is copied beside the new MSI.
    let deploy = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/windows");
    std::fs::copy(&exe, dir.path().join("agent.exe"))?;
    std::fs::copy(deploy.join("agent.toml"), dir.path().join("example.toml"))?;
    std::fs::copy(
        deploy.join("campanile-agent.wxs"),
        dir.path().join("agent.wxs"),
    )?;
    let out = Command::new("wixl")
        .current_dir(dir.path())
        .args([
            "-a",
            "x64",
            "-D",
            "Version=99.0.0",
            "-D",
            "AgentExe=agent.exe",
        ])
        .args([
            "-D",
            "ExampleConfig=example.toml",
            "-o",
            "campanile-agent-newer.msi",
        ])
        .arg("agent.wxs")
        .output()?;
    anyhow::ensure!(out.status.success(), "wixl: {out:?}");
    let last_report = |host: &str| {
        c.running
            .store
            .host_states()
            .into_iter()
            .find(|h| h.host_id == host)
            .map(|h| h.last_report_ms)
    };
    let before = last_report(&host).context("host stored")?;
    installed.0.push(newer.clone());
    let out = run_wine(&["msiexec", "/i", &win_path(&newer), "/qn"])?;
    anyhow::ensure!(out.status.success(), "upgrade: {out:?}");
    assert_eq!(
        std::fs::read(data.join("agent.pem"))?,
        cert,
        "the certificate is kept"
    );
    assert!(data.join("spool.redb").is_file(), "the spool is kept");
    assert_eq!(
        std::fs::read_to_string(data.join("agent.toml"))?,
        written,
        "the config is kept"
    );
    eventually(
        Duration::from_secs(120),
        "a report after the upgrade",
        || {
            let after = last_report(&host);
            async move { after.is_some_and(|t| t > before).then_some(()) }
        },
    )
    .await?;

    // Uninstall: the service and the program go, the agent's data stays.
    let out = run_wine(&["msiexec", "/x", &win_path(&newer), "/qn"])?;
    anyhow::ensure!(out.status.success(), "msiexec /x: {out:?}");
    let out = run_wine(&["net", "start", "CampanileAgent"])?;
    assert!(
        !out.status.success(),
        "the service is still installed: {out:?}"
    );
    assert!(data.join("agent.pem").is_file() && data.join("agent.toml").is_file());
    c.stop().await?;
    let _ = std::fs::remove_dir_all(&data);
    Ok(())
}
