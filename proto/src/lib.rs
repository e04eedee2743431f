//! The Campanile wire contract, `campanile.v1`, and the conventions that
//! agent and collector must share: how a host's identity is written in its
//! certificate ([`identity`]) and how an inventory is hashed ([`inventory_sha256`]).

#[cfg(feature = "config")]
pub mod config;
pub mod enrollment;
pub mod identity;

/// Generated from `proto/campanile/v1/report.proto`; every message and field
/// is documented there.
pub mod v1 {
    #![allow(clippy::all)]
    include!(concat!(env!("OUT_DIR"), "/campanile.v1.rs"));
}

use prost::Message;

/// Metadata key on an INVALID_ARGUMENT status that names the refused report.
pub const INVALID_SEQ_METADATA: &str = "campanile-invalid-seq";

/// Messages (requests and answers) whose encoding is shorter than this go
/// uncompressed; longer ones (inventories, backlogs sent in batches) go
/// gzip-compressed. gzip saves little on a few hundred bytes of protobuf,
/// and tonic builds a fresh compressor for every message (about 300 KB,
/// zeroed) and a fresh decompressor (about 43 KB) on the other side: for a
/// steady report that was more CPU, on the router and at the collector,
/// than the rest of the request. A peer may compress or not whatever the
/// size; both sides accept either.
pub const COMPRESS_MIN_BYTES: usize = 1024;

/// Whether a message of `encoded_len` bytes is sent compressed (see
/// [`COMPRESS_MIN_BYTES`]).
pub fn worth_compressing(encoded_len: usize) -> bool {
    encoded_len >= COMPRESS_MIN_BYTES
}

/// SHA-256 of the protobuf encoding of an inventory. Computed by the agent
/// only; the collector stores what it is given (see `Report.inventory_sha256`).
pub fn inventory_sha256(inventory: &v1::Inventory) -> [u8; 32] {
    sha256(&inventory.encode_to_vec())
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// `N` bytes from exactly `2 * N` hex digits (either case).
pub fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    // from_str_radix alone would take "+f" for 15.
    if text.len() != 2 * N || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Lower-case hex, for hashes in logs, JSON and the store.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(feature = "serde")]
fn serde_hex<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex(bytes))
}
