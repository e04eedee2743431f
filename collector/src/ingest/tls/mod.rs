//! mTLS for the gRPC port: a rustls server that requires a client
//! certificate signed by the configured CA ([`config`]), an accept loop
//! ([`acceptor`]) that admits connections by source ([`admission`],
//! [`source`]) and bounds the handshakes in progress ([`slots`]), and the
//! connections it hands the gRPC server, each carrying the identity read
//! from its verified certificate ([`stream`]). Revoked certificates are
//! refused by the verifier ([`revoking_verifier`]) and, for resumed
//! sessions, by the accept loop.

pub mod acceptor;
pub mod admission;
pub mod config;
pub mod live;
pub mod revoking_verifier;
pub mod slots;
pub mod source;
pub mod stream;

pub use acceptor::{Accepting, incoming};
pub use admission::AdmissionLimits;
pub use config::{TlsError, server_config};
pub use live::LiveConfig;
pub use stream::{AuthenticatedStream, PeerInfo};
