//! Generates the campanile.v1 code with a vendored `protoc`, so a fresh
//! machine needs only the Rust toolchain.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: a build script is a single-threaded process; nothing reads the
    // environment concurrently while we set PROTOC for prost-build.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("PROTOC", protoc);
    }
    println!("cargo:rerun-if-changed=proto");

    let ser = r#"#[cfg_attr(feature = "serde", derive(serde::Serialize))]"#;
    // The service stubs need tonic; the messages alone need only prost.
    let grpc = std::env::var_os("CARGO_FEATURE_GRPC").is_some();
    tonic_prost_build::configure()
        .build_server(grpc)
        .build_client(grpc)
        // The connect() helper needs tonic's transport; each side picks its own features.
        .build_transport(false)
        .type_attribute(".campanile.v1", ser)
        .field_attribute(
            ".campanile.v1.Report.inventory_sha256",
            r#"#[cfg_attr(feature = "serde", serde(serialize_with = "crate::serde_hex"))]"#,
        )
        .compile_protos(
            &[
                "proto/campanile/v1/report.proto",
                "proto/campanile/v1/certificates.proto",
            ],
            &["proto"],
        )?;
    Ok(())
}
