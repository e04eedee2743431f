//! mTLS for the gRPC port: a rustls server that requires a client
//! certificate signed by the configured CA ([`config`]), an accept loop
//! that bounds the handshakes in progress ([`acceptor`]), and the
//! connections it hands the gRPC server, each carrying the identity read
//! from its verified certificate ([`stream`]).

pub mod acceptor;
pub mod config;
pub mod stream;

pub use acceptor::{Accepting, incoming};
pub use config::{TlsError, server_config};
pub use stream::{AuthenticatedStream, PeerInfo};
