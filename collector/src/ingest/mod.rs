//! The ingest path, from a TCP connection to an ack on disk:
//!
//! - [`config`]: `[grpc]` and `[tls]`;
//! - [`listen`]: the gRPC socket, with a backlog sized for a territory;
//! - [`tls`]: mutual TLS, connections admitted by source, bounded and
//!   fairly shared handshakes, the identity of each connection;
//! - [`grpc_server`]: HTTP/2 over the authenticated connections, with
//!   [`request_budget`] (time and bytes a request may take as its body
//!   arrives) and [`identity_connections`] (connections per certificate);
//! - [`service`]: the `Ingest` service agents call;
//! - [`validate`]: what a request may carry, checked before anything is
//!   stored;
//! - then the group committer (`crate::store::commit`).

pub mod config;
pub(crate) mod grpc_server;
pub(crate) mod identity_connections;
pub(crate) mod listen;
pub(crate) mod request_budget;
pub mod service;
pub mod tls;
pub mod validate;
