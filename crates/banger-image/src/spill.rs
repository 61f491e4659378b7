//! The spill file: where the bytes of files from OCI layers wait between reading the
//! layers and writing the flattened tar. It is append-only (a file replaced by a later
//! layer leaves its old bytes behind, unreferenced), private to its staging directory
//! (mode 0600, so no mode bit of an image file, setuid included, ever applies to a host
//! file), and read back by offset.

use std::io::{self, Read};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

/// Which side of a copy into the spill file failed.
#[derive(Debug, thiserror::Error)]
pub enum SpillError {
    #[error("reading the source failed")]
    Read(#[source] io::Error),
    #[error("writing the spill file failed")]
    Write(#[source] io::Error),
}

/// An append-only content file.
#[derive(Debug)]
pub struct Spill {
    file: std::fs::File,
    len: u64,
}

impl Spill {
    /// Creates (truncating) the spill file at `path`, mode 0600.
    pub fn create(path: &Path) -> io::Result<Spill> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        Ok(Spill { file, len: 0 })
    }

    /// Copies all of `reader` to the end of the file; returns `(offset, len)`.
    pub fn append(&mut self, reader: &mut dyn Read) -> Result<(u64, u64), SpillError> {
        let offset = self.len;
        let mut buffer = vec![0u8; 256 << 10];
        let mut len = 0u64;
        loop {
            let n = match reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(SpillError::Read(e)),
            };
            self.file
                .write_all_at(&buffer[..n], offset + len)
                .map_err(SpillError::Write)?;
            len += n as u64;
        }
        self.len += len;
        Ok((offset, len))
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A reader over `len` bytes from `offset`.
    pub fn reader(&self, offset: u64, len: u64) -> SpillReader<'_> {
        SpillReader {
            file: &self.file,
            offset,
            remaining: len,
        }
    }
}

/// Reads one spilled file's bytes.
#[derive(Debug)]
pub struct SpillReader<'a> {
    file: &'a std::fs::File,
    offset: u64,
    remaining: u64,
}

impl Read for SpillReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.file.read_at(&mut buf[..want], self.offset)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the spill file is shorter than recorded",
            ));
        }
        self.offset += n as u64;
        self.remaining -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn appends_and_reads_back_by_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spill");
        let mut spill = Spill::create(&path).unwrap();
        let a = spill.append(&mut &b"hello"[..]).unwrap();
        let big = vec![7u8; 700_000];
        let b = spill.append(&mut big.as_slice()).unwrap();
        let c = spill.append(&mut &b""[..]).unwrap();
        assert_eq!(a, (0, 5));
        assert_eq!(b, (5, 700_000));
        assert_eq!(c, (700_005, 0));
        let mut out = Vec::new();
        spill.reader(b.0, b.1).read_to_end(&mut out).unwrap();
        assert_eq!(out, big);
        let mut out = Vec::new();
        spill.reader(a.0, a.1).read_to_end(&mut out).unwrap();
        assert_eq!(out, b"hello");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600);
        assert_eq!(spill.len(), 700_005);
    }
}
