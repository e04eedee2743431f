//! The spool's file, with its space reserved as it grows.
//!
//! redb grows its file with `set_len`, which leaves a hole: the blocks are
//! taken only when a page is first written. On a full disk redb then holds
//! free pages the disk cannot store, and every commit that picks one fails,
//! even one that only removes reports to make room; redb also keeps pages
//! it must write at the end of the file, in the hole. Writing the new
//! region at once instead means a full disk is met while growing, cleanly,
//! and every page redb counts as free can be written.
//!
//! redb shrinks the file after commits that free its tail and doubles it
//! again when it needs room, so reserving on every growth would rewrite
//! the same blocks over and over. While open, a shrink is only noted: the
//! blocks stay reserved, and a later growth within them writes nothing.
//! The file is cut to its real length when redb closes it; after a crash
//! it is longer than redb's header says, which redb's recovery accepts.

use std::fs::File;
use std::io;
use std::sync::Mutex;

use redb::StorageBackend;
use redb::backends::FileBackend;

/// Zeros written at a time while reserving.
const CHUNK: usize = 64 * 1024;
static ZEROS: [u8; CHUNK] = [0; CHUNK];

#[derive(Debug)]
pub(super) struct ReservedFile {
    inner: FileBackend,
    sizes: Mutex<Sizes>,
}

#[derive(Debug, Clone, Copy)]
struct Sizes {
    /// The length redb set last.
    logical: u64,
    /// The length of the file on disk, every byte of it written.
    reserved: u64,
}

impl ReservedFile {
    /// Locks the file (`DatabaseAlreadyOpen` if another process holds it).
    pub fn new(file: File) -> Result<Self, redb::DatabaseError> {
        let len = file.metadata()?.len();
        Ok(Self {
            inner: FileBackend::new(file)?,
            sizes: Mutex::new(Sizes {
                logical: len,
                reserved: len,
            }),
        })
    }

    fn sizes(&self) -> std::sync::MutexGuard<'_, Sizes> {
        // The sizes are two plain numbers, consistent at every step: a
        // panic elsewhere cannot leave them half updated.
        self.sizes.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl StorageBackend for ReservedFile {
    fn len(&self) -> Result<u64, io::Error> {
        Ok(self.sizes().logical)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        let mut sizes = self.sizes();
        if len <= sizes.reserved {
            sizes.logical = len;
            return Ok(());
        }
        let old = sizes.reserved;
        self.inner.set_len(len)?;
        let mut at = old;
        while at < len {
            let n = usize::try_from(len - at).map_or(CHUNK, |n| n.min(CHUNK));
            if let Err(e) = self.inner.write(at, &ZEROS[..n]) {
                // Give back what was taken: the file stays as it was.
                let _ = self.inner.set_len(old);
                return Err(e);
            }
            at += n as u64;
        }
        *sizes = Sizes {
            logical: len,
            reserved: len,
        };
        Ok(())
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.inner.write(offset, data)
    }

    fn close(&self) -> Result<(), io::Error> {
        let sizes = *self.sizes();
        let cut = if sizes.logical < sizes.reserved {
            self.inner.set_len(sizes.logical)
        } else {
            Ok(())
        };
        // Unlocked whether or not the cut worked: a longer file only
        // costs a recovery at the next open.
        self.inner.close()?;
        cut
    }
}
