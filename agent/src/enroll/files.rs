//! Writing what enrollment gives the agent: the private key, the
//! certificate and the CA bundle, each readable by the agent's user alone
//! from the moment it exists, each replaced whole (a new file renamed over
//! the old), the certificate last: a certificate on disk always has its
//! key beside it.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Where the agent keeps what enrollment gives it.
#[derive(Debug, Clone)]
pub struct CertPaths {
    pub ca_cert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}: {source}")]
pub struct FilesError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Writes the three files of `paths`.
pub fn write_credentials(
    paths: &CertPaths,
    key_pem: &[u8],
    cert_pem: &[u8],
    ca_bundle_pem: &[u8],
) -> Result<(), FilesError> {
    write_private(&paths.ca_cert, ca_bundle_pem)?;
    write_private(&paths.key, key_pem)?;
    write_private(&paths.cert, cert_pem)
}

/// Writes `path` through a temporary file beside it, created with mode
/// 0600 on Unix (on Windows, a DACL for SYSTEM and Administrators only),
/// synced, then renamed over `path` (a rename keeps the file's DACL).
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), FilesError> {
    let err = |path: &Path| {
        let path = path.to_owned();
        move |source| FilesError { path, source }
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err(dir))?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".new");
    let tmp = PathBuf::from(tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(err(&tmp))?;
    #[cfg(unix)]
    {
        // A file left from an earlier attempt keeps its mode on open.
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(err(&tmp))?;
    }
    // Before the contents: a key must never sit under the folder's ACL.
    #[cfg(windows)]
    crate::enroll::windows_acl::restrict_to_system_and_administrators(&tmp).map_err(err(&tmp))?;
    f.write_all(contents).map_err(err(&tmp))?;
    f.sync_all().map_err(err(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(err(path))?;
    // The rename lasts only once the directory is synced.
    #[cfg(unix)]
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(err(dir))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_private_and_replace_what_was_there() {
        let dir = tempfile::tempdir().unwrap();
        let paths = CertPaths {
            ca_cert: dir.path().join("ca.pem"),
            cert: dir.path().join("sub/agent.pem"),
            key: dir.path().join("sub/agent.key"),
        };
        std::fs::create_dir_all(dir.path().join("sub")).unwrap();
        std::fs::write(&paths.key, "old").unwrap();
        write_credentials(&paths, b"key", b"cert", b"ca").unwrap();
        assert_eq!(std::fs::read(&paths.key).unwrap(), b"key");
        assert_eq!(std::fs::read(&paths.cert).unwrap(), b"cert");
        assert_eq!(std::fs::read(&paths.ca_cert).unwrap(), b"ca");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for p in [&paths.key, &paths.cert, &paths.ca_cert] {
                let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", p.display());
            }
        }
        // Windows (the cross-built test, run under Wine): SYSTEM and
        // Administrators only, not what the folder passes down to a file
        // written plainly beside them. Real Windows reports exactly
        // PRIVATE_DACL; Wine keeps no ACL of its own and reports the one it
        // derives from the Unix mode it set from ours (SYSTEM and the file's
        // owner), so the test asserts what both must show: nobody else.
        #[cfg(windows)]
        {
            use crate::enroll::windows_acl::dacl_sddl;
            let plain = dir.path().join("plain.txt");
            std::fs::write(&plain, "x").unwrap();
            let plain = dacl_sddl(&plain).unwrap();
            for p in [&paths.key, &paths.cert, &paths.ca_cert] {
                let dacl = dacl_sddl(p).unwrap();
                assert!(dacl.starts_with("D:"), "{dacl}");
                assert!(dacl.contains("(A;;FA;;;SY)"), "SYSTEM: {dacl}");
                for broad in [";WD)", ";BU)", ";AU)", ";IU)"] {
                    assert!(
                        !dacl.contains(broad),
                        "{broad} in {dacl} of {}",
                        p.display()
                    );
                }
                assert_ne!(dacl, plain, "the folder's ACL, not ours");
            }
        }
        let left: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 2, "no temporary file left: {left:?}");
    }
}
