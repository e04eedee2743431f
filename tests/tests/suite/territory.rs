//! The territory view end to end: a register, a replaceable end-of-life
//! catalog, hosts reporting over real mTLS, and the gaps they show on
//! `/metrics` and the API.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use campanile_proto::v1::{AgentStats, IcmpResult, Probes};
use campanile_tests::planted::{GIB, Host, write};
use campanile_tests::{
    TestCollector, TestPki, TestPrometheus, deliver, deliver_with_stats, duplicate_series,
    eventually, http_get_with, promtool_check_metrics, sample,
};

const TOKEN: &str = "planted-gap-test-token";

/// Three comuni: Alfa has no gap, Borgo has one host of each host gap plus
/// an unplanned one, Casale has a silent host and a planned asset that never
/// reported. Names carry quotes, commas and non-ASCII text for the CSV.
const REGISTER: &str = r#"
[[comune]]
istat_code = "037001"
name = "Alfa"
province = "BO"

[[comune]]
istat_code = "037002"
name = "Borgo \"San\" Pietro, è"
province = "BO"

[[comune]]
istat_code = "037003"
name = "Casale sul Santerno"
province = "BO"

[[site]]
id = "alfa-municipio"
comune = "037001"
name = "Municipio"
kind = "town_hall"

[[site]]
id = "borgo-municipio"
comune = "037002"
name = "Municipio"
kind = "town_hall"

[[site]]
id = "casale-municipio"
comune = "037003"
name = "Municipio"
kind = "town_hall"

[[site]]
id = "casale-biblioteca"
comune = "037003"
name = "Biblioteca"
kind = "library"

[[asset]]
site = "alfa-municipio"
hostname = "alfa-pc1"

[[asset]]
site = "alfa-municipio"
hostname = "alfa-win"
mac = "AA-00-00-00-00-02"

[[asset]]
site = "borgo-municipio"
hostname = "borgo-old"

[[asset]]
site = "borgo-municipio"
hostname = "borgo-small"

[[asset]]
site = "borgo-municipio"
hostname = "borgo-full"

[[asset]]
site = "casale-municipio"
hostname = "casale-silent"

[[asset]]
site = "casale-municipio"
hostname = "casale-never"
name = "PC anagrafe"

[[asset]]
site = "casale-biblioteca"
role = "server"
serial = "SRV-0042"
"#;

/// Dates far from today either way, so the scenario holds whatever the day.
const CATALOG: &str = r#"
[[release]]
id = "debian-10"
name = "Debian 10 (buster)"
os = "debian"
version = "10"
eol = "2024-06-30"

[[release]]
id = "debian-13"
name = "Debian 13 (trixie)"
os = "debian"
version = "13"
eol = "2099-06-30"

[[release]]
id = "windows-11-25h2"
name = "Windows 11 25H2"
os = "windows"
version = "11"
build = 26200
eol = "2099-10-12"
"#;

/// The scenario's register and catalog written out, and a collector using
/// them; returns the register's path too.
async fn scenario(reload_check_secs: u64) -> Result<(TestPki, TestCollector, PathBuf)> {
    let pki = TestPki::new()?;
    let register = write(pki.path(), "register.toml", REGISTER)?;
    let catalog = write(pki.path(), "catalog.toml", CATALOG)?;
    let c = TestCollector::start_with(&pki, &token_config(&register, &catalog, reload_check_secs))
        .await?;
    Ok((pki, c, register))
}

fn token_sha256() -> String {
    campanile_proto::hex(ring::digest::digest(&ring::digest::SHA256, TOKEN.as_bytes()).as_ref())
}

fn token_config(register: &Path, catalog: &Path, reload_check_secs: u64) -> String {
    format!(
        r#"
        [territory]
        register_path = "{}"
        eol_catalog_path = "{}"
        reload_check_secs = {reload_check_secs}
        [[api.tokens]]
        name = "test"
        sha256 = "{}"
        "#,
        register.display(),
        catalog.display(),
        token_sha256()
    )
}

async fn api(c: &TestCollector, path: &str) -> Result<serde_json::Value> {
    let (status, body) = http_get_with(&c.url(path), Some(TOKEN)).await?;
    anyhow::ensure!(status == 200, "GET {path}: {status}: {body}");
    serde_json::from_str(&body).with_context(|| format!("GET {path}: {body}"))
}

#[tokio::test]
async fn planted_gaps_are_all_found_nothing_else_and_comuni_rank_by_score() -> Result<()> {
    let (pki, c, _) = scenario(3600).await?;
    let grpc = c.running.grpc_addr;

    let mut hosts = vec![
        Host::healthy("alfa-pc1", "alfa-municipio"),
        // Matched by MAC although its hostname is not the planned one.
        Host {
            os: ("Windows", "11 (26200)"),
            mac: Some("aa:00:00:00:00:02"),
            ..Host::healthy("alfa-win-renamed", "alfa-municipio")
        },
        Host {
            os: ("Debian GNU/Linux", "10"),
            ..Host::healthy("borgo-old", "borgo-municipio")
        },
        Host {
            memory_bytes: 2 * GIB,
            ..Host::healthy("borgo-small", "borgo-municipio")
        },
        Host {
            fs_used_percent: 95,
            ..Host::healthy("borgo-full", "borgo-municipio")
        },
        Host::healthy("borgo-intruso", "borgo-municipio"),
        // Reports every second, so it is offline three seconds after.
        Host {
            interval_secs: 1,
            ..Host::healthy("casale-silent", "casale-municipio")
        },
        // Its certificate names the town hall; the register (by serial)
        // says the library.
        Host {
            serial: Some("SRV-0042"),
            ..Host::healthy("casale-srv", "casale-municipio")
        },
    ];
    for h in hosts.drain(..) {
        deliver(&pki, grpc, h.cert_site, h.report()).await?;
    }

    let gaps = eventually(
        Duration::from_secs(20),
        "casale-silent to go offline",
        || async {
            let g = api(&c, "/api/v1/gaps").await.ok()?;
            g.as_array()?
                .iter()
                .any(|x| x["kind"] == "offline")
                .then_some(g)
        },
    )
    .await?;
    let found: BTreeSet<(String, String)> = gaps
        .as_array()
        .context("gaps is a list")?
        .iter()
        .map(|g| {
            let who = g["host_id"]
                .as_str()
                .or(g["asset"].as_str())
                .unwrap_or_default();
            (
                g["kind"].as_str().unwrap_or_default().to_owned(),
                who.to_owned(),
            )
        })
        .collect();
    let planted: BTreeSet<(String, String)> = [
        ("os_eol", "borgo-old"),
        ("low_memory", "borgo-small"),
        ("nearly_full", "borgo-full"),
        ("unplanned", "borgo-intruso"),
        ("offline", "casale-silent"),
        ("missing", "PC anagrafe"),
    ]
    .into_iter()
    .map(|(k, h)| (k.to_owned(), h.to_owned()))
    .collect();
    assert_eq!(found, planted, "gaps: {gaps:#}");

    // The register overrides the certificate's site.
    let srv = api(&c, "/api/v1/hosts/casale-srv").await?;
    assert_eq!(srv["site"], "casale-biblioteca");
    assert_eq!(srv["certificate_site"], "casale-municipio");
    assert_eq!(srv["planned"], true);
    assert_eq!(srv["os"]["release_id"], "debian-13");
    assert!(
        srv["inventory"]["dmi"]["product_serial"] == "SRV-0042",
        "{srv:#}"
    );

    // Ranked: Casale (missing and offline) above Borgo above Alfa.
    let comuni = api(&c, "/api/v1/comuni").await?;
    let order: Vec<&str> = comuni
        .as_array()
        .context("list")?
        .iter()
        .filter_map(|x| x["istat_code"].as_str())
        .collect();
    assert_eq!(order, ["037003", "037002", "037001"], "{comuni:#}");
    let score = |code: &str| {
        comuni
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["istat_code"] == code)
            .unwrap()["gap_score"]
            .as_f64()
            .unwrap()
    };
    // Default weights: Casale 0.30*1/3 + 0.20*1/2; Borgo (0.25+0.15+0.05+0.05)/4.
    assert!((score("037003") - 0.2).abs() < 1e-9);
    assert!((score("037002") - 0.125).abs() < 1e-9);
    assert_eq!(score("037001"), 0.0);

    // The same on /metrics.
    let text = c.metrics().await?;
    promtool_check_metrics(&text)?;
    assert_eq!(duplicate_series(&text), Vec::<String>::new());
    let site = |m: &str, site: &str, comune: &str, code: &str| {
        sample(
            &text,
            &format!(r#"{m}{{site="{site}",comune="{comune}",istat_code="{code}"}}"#),
        )
    };
    let casale = "Casale sul Santerno";
    assert_eq!(
        site(
            "campanile_site_hosts_expected",
            "casale-municipio",
            casale,
            "037003"
        ),
        Some(2.0)
    );
    assert_eq!(
        site(
            "campanile_site_hosts_missing",
            "casale-municipio",
            casale,
            "037003"
        ),
        Some(1.0)
    );
    assert_eq!(
        site(
            "campanile_site_hosts_offline",
            "casale-municipio",
            casale,
            "037003"
        ),
        Some(1.0)
    );
    assert_eq!(
        site(
            "campanile_site_hosts_reporting",
            "casale-biblioteca",
            casale,
            "037003"
        ),
        Some(1.0)
    );
    let borgo = r#"Borgo \"San\" Pietro, è"#;
    assert_eq!(
        site(
            "campanile_site_hosts_unplanned",
            "borgo-municipio",
            borgo,
            "037002"
        ),
        Some(1.0)
    );
    assert_eq!(
        site(
            "campanile_site_hosts_reporting",
            "borgo-municipio",
            borgo,
            "037002"
        ),
        Some(4.0)
    );
    let comune = |m: &str, name: &str, code: &str| {
        sample(
            &text,
            &format!(r#"{m}{{comune="{name}",istat_code="{code}"}}"#),
        )
    };
    assert_eq!(
        comune("campanile_comune_hosts_os_eol", borgo, "037002"),
        Some(1.0)
    );
    assert_eq!(
        comune("campanile_comune_hosts_under_spec", borgo, "037002"),
        Some(1.0)
    );
    assert_eq!(
        comune("campanile_comune_hosts_nearly_full", borgo, "037002"),
        Some(1.0)
    );
    assert_eq!(
        comune("campanile_comune_gap_score", "Alfa", "037001"),
        Some(0.0)
    );
    let eol = sample(
        &text,
        r#"campanile_host_os_eol_timestamp_seconds{host="borgo-old",site="borgo-municipio"}"#,
    )
    .context("EOL date of borgo-old")?;
    // The test catalog's Debian 10 ends on 2024-06-30: the date itself, at
    // 00:00 UTC, not the days left, which change every day.
    assert_eq!(eol, 1_719_705_600.0, "{eol}");

    // Per-host budget holds with the territory series added.
    let per_host = text
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains(r#"host="borgo-full""#))
        .count();
    assert!(per_host <= 40, "{per_host} series for one host");
    c.stop().await?;
    Ok(())
}

/// Every gap kind, planted once, is found by the name the API itself
/// writes: the JSON's `kind`, the `?kind=` filter and the docs agree.
#[tokio::test]
async fn every_gap_kind_round_trips_through_the_kind_filter() -> Result<()> {
    let (pki, c, _) = scenario(3600).await?;
    let grpc = c.running.grpc_addr;
    let with_inventory = |h: &Host<'_>, change: &dyn Fn(&mut campanile_proto::v1::Inventory)| {
        let mut r = h.report();
        let inv = r.inventory.as_mut().expect("planted reports carry one");
        change(inv);
        r.inventory_sha256 = campanile_proto::inventory_sha256(inv).to_vec();
        r
    };
    let plain = |h: Host<'_>| h.report();
    let reports = vec![
        plain(Host {
            os: ("Debian GNU/Linux", "10"),
            ..Host::healthy("borgo-old", "borgo-municipio")
        }),
        plain(Host {
            os: ("Plan 9", "4"),
            ..Host::healthy("borgo-plan9", "borgo-municipio")
        }),
        plain(Host {
            memory_bytes: 2 * GIB,
            ..Host::healthy("borgo-small", "borgo-municipio")
        }),
        plain(Host {
            fs_used_percent: 95,
            ..Host::healthy("borgo-full", "borgo-municipio")
        }),
        with_inventory(
            &Host::healthy("borgo-tiny-disk", "borgo-municipio"),
            &|inv| {
                inv.disks.as_mut().unwrap().items[0].size_bytes = Some(100_000_000_000);
            },
        ),
        with_inventory(&Host::healthy("borgo-aged", "borgo-municipio"), &|inv| {
            inv.dmi.as_mut().unwrap().bios_date = Some("01/15/2012".into());
        }),
        with_inventory(
            &Host {
                os: ("Windows", "10 (19045)"),
                ..Host::healthy("borgo-win10", "borgo-municipio")
            },
            &|inv| {
                inv.os_edition = Some("Windows 10 Pro".into());
                inv.cpu_model = Some("Intel(R) Core(TM) i5-4590 CPU @ 3.30GHz".into());
            },
        ),
        // Offline three seconds after its report.
        plain(Host {
            interval_secs: 1,
            ..Host::healthy("casale-silent", "casale-municipio")
        }),
    ];
    for r in reports {
        let site = if r.host_id.starts_with("casale") {
            "casale-municipio"
        } else {
            "borgo-municipio"
        };
        deliver(&pki, grpc, site, r).await?;
    }
    let all: BTreeSet<&str> = campanile_territory::gap::GapKind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect();
    let gaps = eventually(Duration::from_secs(20), "every kind of gap", || async {
        let g = api(&c, "/api/v1/gaps").await.ok()?;
        let kinds: BTreeSet<String> = g
            .as_array()?
            .iter()
            .filter_map(|x| x["kind"].as_str().map(str::to_owned))
            .collect();
        (kinds.len() >= all.len()).then_some(kinds)
    })
    .await?;
    let written: BTreeSet<&str> = gaps.iter().map(String::as_str).collect();
    assert_eq!(written, all, "the kinds the API writes");
    for kind in &all {
        let list = api(&c, &format!("/api/v1/gaps?kind={kind}")).await?;
        let list = list.as_array().context("a list")?;
        assert!(!list.is_empty(), "?kind={kind} found nothing");
        assert!(
            list.iter().all(|g| g["kind"] == *kind),
            "?kind={kind}: {list:?}"
        );
    }
    // A host's own gaps use the same names.
    let win10 = api(&c, "/api/v1/hosts/borgo-win10").await?;
    assert!(
        win10["gaps"]
            .as_array()
            .context("gaps")?
            .iter()
            .any(|g| g["kind"] == "no_windows_11"),
        "{win10:#}"
    );
    // The guide lists every kind by the same name.
    let guide = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/territory.md"),
    )?;
    for kind in &all {
        assert!(
            guide.contains(&format!("| `{kind}` |")),
            "docs/territory.md lacks {kind}"
        );
    }
    c.stop().await?;
    Ok(())
}

#[tokio::test]
async fn api_refuses_requests_without_a_valid_token() -> Result<()> {
    let (pki, c, _) = scenario(3600).await?;
    for path in [
        "/api/v1/comuni",
        "/api/v1/gaps",
        "/api/v1/inventory.csv",
        "/api/v1/hosts/x",
    ] {
        let (status, _) = http_get_with(&c.url(path), None).await?;
        assert_eq!(status, 401, "{path} without a token");
        let (status, _) = http_get_with(&c.url(path), Some("wrong")).await?;
        assert_eq!(status, 401, "{path} with a wrong token");
    }
    let (status, _) = http_get_with(&c.url("/api/v1/comuni"), Some(TOKEN)).await?;
    assert_eq!(status, 200);
    let (status, _) = http_get_with(&c.url("/api/v1/comuni/999999"), Some(TOKEN)).await?;
    assert_eq!(status, 404);
    // /metrics stays open unless protect_metrics is set.
    let (status, _) = http_get_with(&c.metrics_url(), None).await?;
    assert_eq!(status, 200);
    c.stop().await?;

    let protected = format!(
        "[api]\nprotect_metrics = true\n[[api.tokens]]\nname = \"prom\"\nsha256 = \"{}\"\n",
        token_sha256()
    );
    let c = TestCollector::start_with(&pki, &protected).await?;
    let (status, _) = http_get_with(&c.metrics_url(), None).await?;
    assert_eq!(status, 401);
    let (status, body) = http_get_with(&c.metrics_url(), Some(TOKEN)).await?;
    assert_eq!(status, 200);
    assert!(body.contains("campanile_hosts "), "{body}");
    let (status, _) = http_get_with(&c.url("/healthz"), None).await?;
    assert_eq!(status, 200, "/healthz is always open");
    c.stop().await?;
    Ok(())
}

#[tokio::test]
async fn inventory_csv_is_well_formed_with_quotes_commas_and_accents() -> Result<()> {
    let (pki, c, _) = scenario(3600).await?;
    let mut odd = Host::healthy("borgo-small", "borgo-municipio");
    odd.memory_bytes = 2 * GIB;
    let mut report = odd.report();
    if let Some(inv) = report.inventory.as_mut() {
        inv.hostname = Some("PC \"Sindaco\", Ufficio Tecnico — Città".into());
        inv.cpu_model = Some("CPU, \"quoted\"\nsecond line".into());
        report.inventory_sha256 = campanile_proto::inventory_sha256(inv).to_vec();
    }
    deliver(&pki, c.running.grpc_addr, "borgo-municipio", report).await?;
    deliver(
        &pki,
        c.running.grpc_addr,
        "alfa-municipio",
        Host::healthy("alfa-pc1", "alfa-municipio").report(),
    )
    .await?;

    let (status, body) = http_get_with(&c.url("/api/v1/inventory.csv"), Some(TOKEN)).await?;
    assert_eq!(status, 200);
    let mut reader = csv::Reader::from_reader(body.as_bytes());
    let headers: Vec<String> = reader.headers()?.iter().map(str::to_owned).collect();
    assert_eq!(headers, campanile_collector::http::api::CSV_COLUMNS);
    let rows: Vec<csv::StringRecord> = reader.records().collect::<Result<_, _>>()?;
    assert_eq!(rows.len(), 2, "{body}");
    for r in &rows {
        assert_eq!(r.len(), headers.len(), "every row has every column: {r:?}");
    }
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let borgo = rows
        .iter()
        .find(|r| &r[col("host_id")] == "borgo-small")
        .context("borgo row")?;
    assert_eq!(&borgo[col("comune")], "Borgo \"San\" Pietro, è");
    assert_eq!(
        &borgo[col("hostname")],
        "PC \"Sindaco\", Ufficio Tecnico — Città"
    );
    assert_eq!(&borgo[col("cpu_model")], "CPU, \"quoted\"\nsecond line");
    assert_eq!(&borgo[col("memory_gib")], "2.0");
    assert_eq!(&borgo[col("system_disk_gb")], "512");
    assert_eq!(&borgo[col("os_eol")], "2099-06-30");
    assert_eq!(&borgo[col("gaps")], "low_memory");
    assert_eq!(&borgo[col("planned")], "true");
    c.stop().await?;
    Ok(())
}

#[tokio::test]
async fn register_change_takes_effect_and_an_invalid_one_is_refused() -> Result<()> {
    // Checked every second: the test waits on the file watch, not a timer.
    let (_pki, c, register) = scenario(1).await?;
    let entries = |text: &str, kind: &str| {
        sample(
            text,
            &format!(r#"campanile_register_entries{{kind="{kind}"}}"#),
        )
    };
    assert_eq!(entries(&c.metrics().await?, "assets"), Some(8.0));

    let added =
        format!("{REGISTER}\n[[asset]]\nsite = \"alfa-municipio\"\nhostname = \"alfa-pc9\"\n");
    std::fs::write(&register, &added)?;
    eventually(
        Duration::from_secs(20),
        "the new asset to count",
        || async {
            let t = c.metrics().await.ok()?;
            (entries(&t, "assets") == Some(9.0)).then_some(())
        },
    )
    .await?;
    let alfa = api(&c, "/api/v1/comuni/037001").await?;
    assert_eq!(alfa["counts"]["expected"], 3);

    // A typo: the site does not exist. Refused, old register kept.
    std::fs::write(
        &register,
        added.replace(
            "site = \"alfa-municipio\"\nhostname = \"alfa-pc9\"",
            "site = \"alfa-nowhere\"\nhostname = \"alfa-pc9\"",
        ),
    )?;
    let text = eventually(Duration::from_secs(20), "the reload to fail", || async {
        let t = c.metrics().await.ok()?;
        (sample(&t, "campanile_register_last_reload_successful") == Some(0.0)).then_some(t)
    })
    .await?;
    assert_eq!(
        entries(&text, "assets"),
        Some(9.0),
        "the previous register stays"
    );
    let status = c.running.territory.status();
    let err = status.last_error.context("the error is kept")?;
    assert!(
        err.contains("line") && err.contains("alfa-nowhere"),
        "{err}"
    );
    assert_eq!(
        api(&c, "/api/v1/comuni/037001").await?["counts"]["expected"],
        3
    );

    // Fixed again: back in force.
    std::fs::write(&register, REGISTER)?;
    eventually(
        Duration::from_secs(20),
        "the fixed register to load",
        || async {
            let t = c.metrics().await.ok()?;
            (sample(&t, "campanile_register_last_reload_successful") == Some(1.0)
                && entries(&t, "assets") == Some(8.0))
            .then_some(())
        },
    )
    .await?;
    c.stop().await?;
    Ok(())
}

/// Every PromQL expression of the Grafana dashboard and of the rules, run
/// against a real Prometheus that loads the rules and scrapes a collector
/// fed with a territory where each of them has something to show.
#[tokio::test]
async fn every_dashboard_and_rule_query_runs_and_finds_data() -> Result<()> {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let pki = TestPki::new()?;
    // A comune where nothing reports (gap score 1), and a release whose end
    // of life is 90 days away.
    // Reachability: Casale's line is down as seen from the centre (its WAN
    // address refuses), Spenta's answers while its only host falls silent,
    // Alfa's router does not answer its agent and its gateway loses pings.
    let wan = std::net::TcpListener::bind("127.0.0.1:0")?;
    let register = format!(
        "{REGISTER}\n[[comune]]\nistat_code = \"037009\"\nname = \"Dormiente\"\n\
         [[site]]\nid = \"dormiente\"\ncomune = \"037009\"\nname = \"Municipio\"\n\
         [[asset]]\nsite = \"dormiente\"\nhostname = \"dorm-pc\"\n\
         [[comune]]\nistat_code = \"037010\"\nname = \"Spenta\"\n\
         [[site]]\nid = \"spenta\"\ncomune = \"037010\"\nname = \"Municipio\"\nwan_address = \"127.0.0.1\"\n\
         [[device]]\nid = \"alfa-router\"\nsite = \"alfa-municipio\"\naddress = \"192.0.2.1\"\nkind = \"router\"\n"
    )
    .replace(
        "id = \"casale-municipio\"",
        "id = \"casale-municipio\"\nwan_address = \"127.0.0.2\"",
    );
    anyhow::ensure!(register.contains("127.0.0.2"), "Casale got its WAN address");
    let soon = time::OffsetDateTime::now_utc().date() + time::Duration::days(90);
    let catalog = format!(
        "{CATALOG}\n[[release]]\nid = \"debian-12\"\nname = \"Debian 12\"\nos = \"debian\"\n\
         version = \"12\"\neol = \"{soon}\"\n"
    );
    let register_path = write(pki.path(), "register.toml", &register)?;
    let catalog_path = write(pki.path(), "catalog.toml", &catalog)?;
    let config = format!(
        "{}\n[probes.wan]\nmethod = \"tcp\"\ntcp_port = {}\ninterval_secs = 1\n",
        token_config(&register_path, &catalog_path, 3600),
        wan.local_addr()?.port()
    );
    let c = TestCollector::start_with(&pki, &config).await?;
    let grpc = c.running.grpc_addr;
    let icmp = |target: &str, device: &str, lost| IcmpResult {
        target: target.into(),
        device: device.into(),
        address: "192.0.2.1".into(),
        sent: 10,
        lost,
        rtt_avg_seconds: (lost < 10).then_some(0.004),
        ..Default::default()
    };
    for h in [
        Host {
            os: ("Debian GNU/Linux", "12"),
            probes: Some(Probes {
                icmp: vec![
                    icmp("gateway", "", 3),
                    icmp("", "alfa-router", 10),
                    // A slow line to the centre.
                    IcmpResult {
                        rtt_avg_seconds: Some(0.45),
                        ..icmp("centre", "", 0)
                    },
                ],
                ..Default::default()
            }),
            ..Host::healthy("alfa-pc1", "alfa-municipio")
        },
        Host {
            interval_secs: 1,
            ..Host::healthy("spenta-pc", "spenta")
        },
        Host {
            os: ("Debian GNU/Linux", "10"),
            memory_bytes: 2 * GIB,
            fs_used_percent: 95,
            ..Host::healthy("borgo-old", "borgo-municipio")
        },
        Host {
            interval_secs: 1,
            ..Host::healthy("casale-silent", "casale-municipio")
        },
    ] {
        deliver(&pki, grpc, h.cert_site, h.report()).await?;
    }
    // Borgo's agent holds a two-hour backlog and has dropped reports.
    let borgo = Host::healthy("borgo-pc2", "borgo-municipio");
    let backlog = |dropped| AgentStats {
        queue_depth: 120,
        oldest_unsent_age_seconds: 7200,
        dropped_reports_total: dropped,
        dropped_spool_full_total: dropped,
        ..Default::default()
    };
    deliver_with_stats(&pki, grpc, borgo.cert_site, borgo.report(), backlog(5)).await?;
    // An agent two minutes fast whose certificate has ten days left.
    let fast = Host::healthy("alfa-pc2", "alfa-municipio");
    campanile_tests::deliver_raw(
        &pki,
        grpc,
        fast.cert_site,
        10,
        campanile_proto::v1::DeliverRequest {
            reports: vec![fast.report()],
            agent_stats: None,
            sent_unix_ms: campanile_agent::now_ms() + 120_000,
        },
    )
    .await?;
    // The register now fails to load: the reload alert has data too.
    std::fs::write(&register_path, "[[comune]]\nistat_code = 1\n")?;
    let _ = c.running.territory.reload(campanile_agent::now_ms());

    let prom = TestPrometheus::start_with_rules(
        c.running.http_addr,
        &[deploy.join("prometheus/rules/campanile.rules.yml")],
    )?;

    // Once Prometheus has seen 5 drops, 4 more: increase() has data.
    eventually(
        Duration::from_secs(60),
        "the first drop count scraped",
        || async {
            let body = prom
                .query(r#"campanile_site_agent_reports_dropped_total{reason="spool_full"} == 5"#)
                .await
                .ok()?;
            body.contains("borgo-municipio").then_some(())
        },
    )
    .await?;
    deliver_with_stats(&pki, grpc, borgo.cert_site, borgo.report(), backlog(9)).await?;

    let mut queries: Vec<String> = Vec::new();
    let rules = std::fs::read_to_string(deploy.join("prometheus/rules/campanile.rules.yml"))?;
    let rule_count = rules
        .lines()
        .filter(|l| {
            l.trim_start().starts_with("- record:") || l.trim_start().starts_with("- alert:")
        })
        .count();
    queries.extend(
        rules
            .lines()
            .filter_map(|l| l.trim_start().strip_prefix("expr:"))
            .map(|e| e.trim().to_owned()),
    );
    assert_eq!(queries.len(), rule_count, "one single-line expr per rule");
    let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        deploy.join("grafana/dashboards/campanile-territory.json"),
    )?)?;
    let mut dash_queries = Vec::new();
    collect_exprs(&dashboard, &mut dash_queries);
    assert!(dash_queries.len() >= 15, "{dash_queries:?}");
    // The drill-down variables, as Grafana would fill them.
    queries.extend(dash_queries.into_iter().map(|q| {
        q.replace("$comune", "Casale sul Santerno")
            .replace("$istat_code", "037003")
    }));

    // Empty by design while Prometheus scrapes the collector.
    let empty_by_design = [r#"up{job="campanile"} == 0"#];
    for q in &queries {
        let must_have_data = !empty_by_design.contains(&q.as_str());
        let result = eventually(
            Duration::from_secs(60),
            &format!("data for {q}"),
            || async {
                let body = prom.query(q).await.ok()?;
                let v: serde_json::Value = serde_json::from_str(&body).ok()?;
                if v["status"] != "success" {
                    // A query error is final: report it at once.
                    return Some(Err(anyhow::anyhow!("{q}: {body}")));
                }
                let n = v["data"]["result"].as_array().map_or(0, Vec::len);
                (n > 0 || !must_have_data).then_some(Ok(n))
            },
        )
        .await?;
        result?;
    }
    // Every family this territory shows is in the metrics reference.
    crate::docs::assert_documented(&c.metrics().await?)?;
    c.stop().await?;
    Ok(())
}

/// PromQL of every panel target and variable; Grafana's
/// `label_values(<selector>, <label>)` becomes its selector.
fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            if let Some(e) = m.get("expr").and_then(|e| e.as_str()) {
                out.push(e.to_owned());
            }
            if let Some(q) = m.get("definition").and_then(|e| e.as_str()) {
                let inner = q
                    .strip_prefix("label_values(")
                    .and_then(|r| r.rsplit_once(','))
                    .map_or(q, |(sel, _)| sel);
                out.push(inner.trim().to_owned());
            }
            m.values().for_each(|x| collect_exprs(x, out));
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_exprs(x, out)),
        _ => {}
    }
}
