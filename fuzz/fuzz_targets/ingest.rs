//! The request path: bytes as they come off the wire, decoded as a
//! DeliverRequest, validated and committed into a scratch store by the
//! real service, then the host read back as the API reads it. Nothing may
//! panic, and the service must keep answering.

#![no_main]

use std::sync::{Arc, OnceLock};

use campanile_collector::ingest::service::IngestService;
use campanile_collector::ingest::tls::PeerInfo;
use campanile_collector::ingest::validate::Limits;
use campanile_collector::reach::Reach;
use campanile_collector::store::Store;
use campanile_collector::store::commit::Committer;
use campanile_collector::telemetry::Telemetry;
use campanile_proto::identity::HostIdentity;
use campanile_proto::v1::DeliverRequest;
use campanile_proto::v1::ingest_server::Ingest;
use libfuzzer_sys::fuzz_target;
use prost::Message;

const HOST: &str = "fuzz-pc";

struct Scratch {
    runtime: tokio::runtime::Runtime,
    service: IngestService,
    store: Arc<Store>,
}

fn scratch() -> &'static Scratch {
    static SCRATCH: OnceLock<Scratch> = OnceLock::new();
    SCRATCH.get_or_init(|| {
        // On tmpfs where there is one: each input is a commit, and an
        // fsync per input would slow the fuzzer a hundredfold.
        let base = std::path::Path::new("/dev/shm");
        let dir = if base.is_dir() {
            base.join(format!("campanile-fuzz-{}", std::process::id()))
        } else {
            std::env::temp_dir().join(format!("campanile-fuzz-{}", std::process::id()))
        };
        std::fs::create_dir_all(&dir).expect("scratch directory");
        let store = Arc::new(Store::open(&dir.join("store.db")).expect("scratch store"));
        let telemetry = Arc::new(Telemetry::new());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let _guard = runtime.enter();
        let (committer, thread) = Committer::start(
            store.clone(),
            Arc::new(Default::default()),
            telemetry.clone(),
            100,
        );
        // The committer runs for the life of the process.
        std::mem::forget(thread);
        let reach = Arc::new(Reach::new(Default::default()));
        let service = IngestService::new(
            committer,
            Limits::default(),
            telemetry,
            reach,
            Arc::new(Default::default()),
        );
        Scratch {
            runtime,
            service,
            store,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let Ok(mut body) = DeliverRequest::decode(bytes) else {
        return;
    };
    // Half the inputs name the certificate's host in every report, so the
    // fuzzer gets past the identity check to validation and the store.
    if mode & 1 == 1 {
        for r in &mut body.reports {
            r.host_id = HOST.into();
        }
    }
    let s = scratch();
    let mut request = tonic::Request::new(body);
    request.extensions_mut().insert(PeerInfo {
        remote_addr: "127.0.0.1:1".parse().unwrap(),
        identity: HostIdentity::new(HOST, "fuzz-site").map_err(|e| e.to_string()),
        cert_not_after_ms: Some(i64::from(mode) * 86_400_000),
        enrolling: false,
        cert_serial: None,
        cert_key_sha256: None,
        cert_issuer_sha256: None,
    });
    let _ = s.runtime.block_on(s.service.deliver(request));
    // What was stored reads back, whatever it was.
    let _ = s.store.inventory(HOST);
    let _ = s.store.inventory_changes(HOST);
    let _ = s.store.host_states();
});
