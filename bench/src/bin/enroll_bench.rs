//! Enrollment benchmark (`make bench`): a territory's first morning. 1,000
//! agents enroll at once with one token (the agent's own enrollment code:
//! key made in process, the collector's chain checked against the token's
//! pin, CSR, files written), then each connects with its new certificate
//! and delivers a report; measured until the last report is committed.
//! The collector runs in this process (release build).
//!
//! Usage: `enroll-bench [--json] [AGENTS]`. Prints its section of the
//! `make bench` record: Markdown, or JSON with `--json`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use campanile_agent::enroll::{CertPaths, Enrollment, enroll_until_done};
use campanile_agent::transport::{Backoff, SendError, Transport};
use campanile_bench::harness::{Figure, Section};
use campanile_bench::stats::quantile;
use campanile_collector::enroll::admin::{self, NewTokenArgs};
use campanile_proto::enrollment::EnrollmentToken;
use campanile_territory::register::Register;
use campanile_tests::{TestCollector, TestPki, sample, steady_report};

const SITE: &str = "municipio-a";

#[tokio::main]
async fn main() -> Result<()> {
    campanile_tests::init_crypto();
    let agents: usize = std::env::args()
        .skip(1)
        .find(|a| a != "--json")
        .map_or(Ok(1000), |a| a.parse())
        .context("usage: enroll-bench [--json] [AGENTS]")?;
    let pki = Arc::new(TestPki::new()?);
    let dir = tempfile::tempdir()?;
    let register = dir.path().join("register.toml");
    std::fs::write(
        &register,
        format!(
            "[[comune]]\nistat_code = \"999001\"\nname = \"Borgo Esempio\"\n\
             [[site]]\nid = \"{SITE}\"\ncomune = \"999001\"\nname = \"Municipio\"\nkind = \"town_hall\"\n"
        ),
    )?;
    let c = TestCollector::start_with(
        &pki,
        &format!(
            "[enrollment]\nca_key_path = \"{}\"\n[territory]\nregister_path = \"{}\"\n",
            pki.path().join("ca.key").display(),
            register.display()
        ),
    )
    .await?;
    let grpc = c.running.grpc_addr;
    let token = make_token(&c, &pki, &register, agents)?;

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..agents {
        let (token, pki) = (token.clone(), pki.clone());
        let home = dir.path().join(format!("pc-{i:04}"));
        tasks.spawn(async move {
            std::fs::create_dir_all(&home)?;
            let paths = CertPaths {
                ca_cert: home.join("ca.pem"),
                cert: home.join("agent.pem"),
                key: home.join("agent.key"),
            };
            let host = format!("pc-{i:04}");
            let e = Enrollment {
                authority: grpc.to_string(),
                server_name: "localhost".into(),
                token,
                host_id: Some(host.clone()),
                hostname: host.clone(),
                timeout: Duration::from_secs(30),
            };
            // As the agent's first `run`: transient refusals (the
            // collector busy, connections shed) are tried again.
            let enrolled = tokio::time::timeout(
                Duration::from_secs(600),
                enroll_until_done(&e, &paths, std::future::pending()),
            )
            .await;
            let enrolled_at = started.elapsed();
            if !matches!(enrolled, Ok(Ok(Some(_)))) {
                anyhow::bail!("{host}: enrollment failed: {enrolled:?}");
            }
            let cfg =
                pki.agent_config_with(&host, grpc, 60, &paths.ca_cert, &paths.cert, &paths.key)?;
            let mut report = steady_report(&host).await;
            report.seq = 1;
            // As the agent's run loop: a transient failure (a connection
            // shed while a thousand handshakes arrive at once) is sent again
            // after the agent's own backoff at a 60 s interval.
            let mut transport = Transport::new(&cfg.collector)?;
            let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(60));
            loop {
                match transport
                    .deliver(vec![report.clone()], Default::default())
                    .await
                {
                    Ok(_) => break,
                    Err(SendError::Retry { .. }) if backoff.attempts() < 10 => {
                        tokio::time::sleep(backoff.next_delay()).await;
                    }
                    Err(e) => anyhow::bail!("{host}: first report: {e:?}"),
                }
            }
            Ok::<_, anyhow::Error>((enrolled_at, started.elapsed(), backoff.attempts()))
        });
    }
    let (mut enrolled, mut reported) = (Vec::new(), Vec::new());
    let (mut errors, mut resent) = (Vec::new(), 0u32);
    while let Some(r) = tasks.join_next().await {
        match r? {
            Ok((e, d, retries)) => {
                enrolled.push(e.as_secs_f64());
                reported.push(d.as_secs_f64());
                resent += retries;
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    let all_secs = started.elapsed().as_secs_f64();
    let text = c.metrics().await?;
    let ok = sample(&text, "campanile_enrollments_total{result=\"ok\"}").unwrap_or(0.0);
    let refused: f64 = text
        .lines()
        .filter(|l| l.starts_with("campanile_enrollments_total{") && !l.contains("result=\"ok\""))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    let shed = campanile_tests::scrape::family_sum(&text, "campanile_grpc_connections_shed_total");
    let shed_by_reason: Vec<String> = campanile_collector::telemetry::SHED_REASONS
        .iter()
        .filter_map(|r| {
            let n = sample(
                &text,
                &format!("campanile_grpc_connections_shed_total{{reason=\"{r}\"}}"),
            )?;
            (n > 0.0).then(|| format!("{n} {r}"))
        })
        .collect();
    let accepted = sample(&text, "campanile_ingest_reports_accepted_total").unwrap_or(0.0);
    c.stop().await?;
    ensure!(
        errors.len() < agents,
        "every agent failed: {:?}",
        errors.first()
    );

    let mut section = Section::new(
        "Enrollment",
        format!(
            "{agents} agents enroll at once with one token (`enroll-bench`, release build): each \
             makes its key, checks the collector's chain against the token's pin, sends a CSR and \
             writes its files (the agent's own code), then connects with its new certificate and \
             delivers a report, sending it again after the agent's own backoff if the collector \
             sheds the connection. All of them come from 127.0.0.1, harder than a territory whose \
             town halls each have their own address: the collector's bound on unauthenticated \
             connections per source then sheds some of the first reports. The collector runs in \
             the same process, its store on this disk."
        ),
    );
    enrolled.sort_by(f64::total_cmp);
    reported.sort_by(f64::total_cmp);
    let none_failed = errors.is_empty() && accepted as usize == agents && ok as usize == agents;
    section.figures = vec![
        Figure::goal(
            format!("{agents} agents: enrolled and reporting"),
            format!("{} of {agents}", reported.len()),
            "all, no failure",
            none_failed,
        ),
        Figure::info(
            "enrolled after p50 / p99 / max",
            format!(
                "{:.2} / {:.2} / {:.2} s",
                quantile(&enrolled, 0.5).unwrap_or(0.0),
                quantile(&enrolled, 0.99).unwrap_or(0.0),
                enrolled.last().copied().unwrap_or(0.0)
            ),
        ),
        Figure::info(
            "time until the last one reported",
            format!("{all_secs:.1} s"),
        ),
        Figure::info(
            "reported after p50 / p99 / max",
            format!(
                "{:.2} / {:.2} / {:.2} s",
                quantile(&reported, 0.5).unwrap_or(0.0),
                quantile(&reported, 0.99).unwrap_or(0.0),
                reported.last().copied().unwrap_or(0.0)
            ),
        ),
        Figure::info(
            "enrollments signed / refused; connections shed; first reports sent again",
            format!("{ok} / {refused}; {shed}; {resent}"),
        ),
    ];
    if !shed_by_reason.is_empty() {
        section.notes.push(format!(
            "Connections shed, by reason: {}.",
            shed_by_reason.join(", ")
        ));
    }
    if !errors.is_empty() {
        section.notes.push(format!(
            "{} agents failed; the first: {}",
            errors.len(),
            errors[0]
        ));
    }
    section.print(std::env::args().any(|a| a == "--json"))
}

fn make_token(
    c: &TestCollector,
    pki: &TestPki,
    register: &std::path::Path,
    uses: usize,
) -> Result<EnrollmentToken> {
    let loaded = Register::load(register)?;
    let spec = NewTokenArgs {
        site: SITE,
        uses: u32::try_from(uses)?,
        expires_in: "1d",
        name: "first morning",
        may_replace: false,
    }
    .validated(Some((&loaded, register)))?;
    let pin = campanile_collector::rollover::server_ca_sha256(
        &pki.path().join("ca.pem"),
        &pki.path().join("server.pem"),
    )?;
    let (token, _) = admin::create_token(&*c.running.store, &spec, pin, campanile_agent::now_ms())?;
    Ok(token)
}
