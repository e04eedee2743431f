//! Which requests the real agent compresses: large ones (a backlog, an
//! inventory) go gzip-compressed, a steady report of a few hundred bytes
//! goes as it is (`campanile_proto::COMPRESS_MIN_BYTES`).

use std::sync::{Arc, Mutex};

use anyhow::Result;
use campanile_agent::transport::Transport;
use campanile_proto::v1::ingest_server::{Ingest, IngestServer};
use campanile_proto::v1::{
    AgentStats, DeliverRequest, DeliverResponse, Health, Inventory, Package, PackageList, Report,
};
use campanile_tests::{TestPki, init_crypto};
use tonic::codec::CompressionEncoding;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

/// Answers every request, noting the `grpc-encoding` it came with.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Option<String>>>>);

#[tonic::async_trait]
impl Ingest for Recorder {
    async fn deliver(
        &self,
        request: Request<DeliverRequest>,
    ) -> Result<Response<DeliverResponse>, Status> {
        let encoding = request
            .metadata()
            .get("grpc-encoding")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        self.0.lock().unwrap().push(encoding);
        Ok(Response::new(DeliverResponse {
            committed_seq: request
                .get_ref()
                .reports
                .iter()
                .map(|r| r.seq)
                .max()
                .unwrap_or(0),
            directives: None,
        }))
    }
}

fn report(seq: u64, inventory: Option<Inventory>) -> Report {
    Report {
        host_id: "pc-1".into(),
        epoch: 1,
        seq,
        collected_at_ms: campanile_agent::now_ms(),
        interval_secs: 60,
        health: Some(Health {
            load1: Some(0.5),
            ..Default::default()
        }),
        inventory,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steady_report_goes_plain_and_an_inventory_compressed() -> Result<()> {
    init_crypto();
    let pki = TestPki::new()?;
    let read = |name: &str| std::fs::read(pki.path().join(name));
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(read("server.pem")?, read("server.key")?))
        .client_ca_root(Certificate::from_pem(read("ca.pem")?));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let recorder = Recorder::default();
    let server = tokio::spawn(
        Server::builder()
            .tls_config(tls)?
            .add_service(
                IngestServer::new(recorder.clone()).accept_compressed(CompressionEncoding::Gzip),
            )
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let cfg = pki.agent_config("pc-1", "site-1", addr, 60)?;
    let mut transport = Transport::new(&cfg.collector)?;

    let steady = transport
        .deliver(vec![report(1, None)], AgentStats::default())
        .await;
    assert_eq!(
        steady
            .map_err(|e| format!("{e:?}"))
            .map(|r| r.committed_seq),
        Ok(1)
    );
    let packages = (0..200)
        .map(|i| Package {
            name: format!("package-{i}"),
            version: format!("1.{i}.0-1"),
            ..Default::default()
        })
        .collect();
    let inventory = Inventory {
        hostname: Some("PC-1".into()),
        packages: Some(PackageList {
            items: packages,
            ..Default::default()
        }),
        ..Default::default()
    };
    let full = transport
        .deliver(vec![report(2, Some(inventory))], AgentStats::default())
        .await;
    assert_eq!(
        full.map_err(|e| format!("{e:?}")).map(|r| r.committed_seq),
        Ok(2)
    );

    assert_eq!(
        *recorder.0.lock().unwrap(),
        [None, Some("gzip".to_owned())],
        "encodings of the steady report, then of the inventory"
    );
    server.abort();
    Ok(())
}
