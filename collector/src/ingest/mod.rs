//! The ingest path, from a TCP connection to an ack on disk:
//!
//! - [`config`]: `[grpc]` and `[tls]`;
//! - [`listen`]: the gRPC socket, with a backlog sized for a territory;
//! - [`tls`]: mutual TLS, bounded handshakes, the identity of each
//!   connection;
//! - [`grpc_server`]: HTTP/2 over the authenticated connections;
//! - [`service`]: the `Ingest` service agents call;
//! - [`validate`]: what a request may carry, checked before anything is
//!   stored;
//! - then the group committer (`crate::store::commit`).

pub mod config;
pub(crate) mod grpc_server;
pub(crate) mod listen;
pub mod service;
pub mod tls;
pub mod validate;
