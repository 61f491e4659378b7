//! Decompressing a verified layer blob (gzip, zstd or plain tar) into the uncompressed
//! layer file the tree points into, under a budget on expanded bytes shared by all the
//! layers of one import: a decompression bomb stops at the limit instead of filling the
//! disk. The output is written beside its final name and renamed when complete.

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::oci::manifest::Compression;

/// Why a layer could not be decompressed.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error(
        "the layers expand to more than {limit} bytes, the limit on an import's expanded size \
         (BANGER_IMPORT_MAX_BYTES raises it)"
    )]
    TooLarge { limit: u64 },
    #[error("layer {digest} is not valid {format} data")]
    Corrupt {
        digest: String,
        format: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// Decompressed bytes allowed for one import, shared by its layers.
#[derive(Debug, Clone)]
pub struct ExpandedBudget {
    used: Arc<AtomicU64>,
    limit: u64,
}

impl ExpandedBudget {
    pub fn new(limit: u64) -> ExpandedBudget {
        ExpandedBudget {
            used: Arc::new(AtomicU64::new(0)),
            limit,
        }
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Counts `bytes` (e.g. a layer found in the cache); false once over the limit.
    pub fn charge(&self, bytes: u64) -> bool {
        self.used.fetch_add(bytes, Ordering::Relaxed) + bytes <= self.limit
    }
}

/// Decompresses `blob` into `out` (created; removed again on failure). Returns the
/// number of uncompressed bytes.
pub fn unpack_layer(
    blob: &Path,
    compression: Compression,
    digest: &str,
    out: &Path,
    budget: &ExpandedBudget,
) -> Result<u64, UnpackError> {
    let result = unpack_inner(blob, compression, digest, out, budget);
    if result.is_err() {
        let _ = std::fs::remove_file(out);
    }
    result
}

fn unpack_inner(
    blob: &Path,
    compression: Compression,
    digest: &str,
    out: &Path,
    budget: &ExpandedBudget,
) -> Result<u64, UnpackError> {
    let write_error = |source| UnpackError::Write {
        path: out.display().to_string(),
        source,
    };
    let format = match compression {
        Compression::None => "tar",
        Compression::Gzip => "gzip",
        Compression::Zstd => "zstd",
    };
    let corrupt = |source| UnpackError::Corrupt {
        digest: digest.to_string(),
        format,
        source,
    };
    let input =
        io::BufReader::with_capacity(256 << 10, std::fs::File::open(blob).map_err(corrupt)?);
    let mut decoder: Box<dyn Read> = match compression {
        Compression::None => Box::new(input),
        // Multi-member gzip streams exist in the wild; MultiGzDecoder reads them all.
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
        Compression::Zstd => Box::new(zstd::Decoder::with_buffer(input).map_err(corrupt)?),
    };
    let mut output =
        io::BufWriter::with_capacity(1 << 20, std::fs::File::create(out).map_err(write_error)?);
    let mut buffer = vec![0u8; 256 << 10];
    let mut total = 0u64;
    loop {
        let n = match decoder.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(corrupt(e)),
        };
        if !budget.charge(n as u64) {
            return Err(UnpackError::TooLarge {
                limit: budget.limit,
            });
        }
        output.write_all(&buffer[..n]).map_err(write_error)?;
        total += n as u64;
    }
    let file = output
        .into_inner()
        .map_err(|e| write_error(e.into_error()))?;
    file.sync_data().map_err(write_error)?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compress(data: &[u8], compression: Compression) -> Vec<u8> {
        match compression {
            Compression::None => data.to_vec(),
            Compression::Gzip => {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(data).unwrap();
                gz.finish().unwrap()
            }
            Compression::Zstd => zstd::encode_all(data, 3).unwrap(),
        }
    }

    #[test]
    fn every_compression_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let blob = dir.path().join("blob");
            std::fs::write(&blob, compress(&data, compression)).unwrap();
            let out = dir.path().join("out.tar");
            let budget = ExpandedBudget::new(1 << 20);
            let n = unpack_layer(&blob, compression, "sha256:x", &out, &budget).unwrap();
            assert_eq!(n, data.len() as u64, "{compression:?}");
            assert_eq!(std::fs::read(&out).unwrap(), data, "{compression:?}");
            assert_eq!(budget.used(), data.len() as u64);
        }
    }

    #[test]
    fn a_bomb_stops_at_the_limit_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        // 64 MiB of zeros compress to a few dozen KiB.
        let bomb = compress(&vec![0u8; 64 << 20], Compression::Gzip);
        assert!(bomb.len() < 1 << 20);
        let blob = dir.path().join("bomb");
        std::fs::write(&blob, bomb).unwrap();
        let out = dir.path().join("out.tar");
        let budget = ExpandedBudget::new(8 << 20);
        let error = unpack_layer(&blob, Compression::Gzip, "sha256:b", &out, &budget).unwrap_err();
        assert!(
            matches!(error, UnpackError::TooLarge { limit } if limit == 8 << 20),
            "{error}"
        );
        assert!(!out.exists());
        // The budget is shared: a second layer after a big first one fails too.
        let budget = ExpandedBudget::new(10);
        assert!(budget.charge(8));
        assert!(!budget.charge(8));
    }

    #[test]
    fn corrupt_data_names_the_layer() {
        let dir = tempfile::tempdir().unwrap();
        let blob = dir.path().join("bad");
        std::fs::write(&blob, b"definitely not gzip").unwrap();
        let out = dir.path().join("out.tar");
        let error = unpack_layer(
            &blob,
            Compression::Gzip,
            "sha256:bad",
            &out,
            &ExpandedBudget::new(1 << 20),
        )
        .unwrap_err();
        assert_eq!(error.to_string(), "layer sha256:bad is not valid gzip data");
        assert!(!out.exists());
    }
}
