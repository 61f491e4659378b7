//! `Bundle` images: a prebuilt ext4 file (optionally gzip-compressed, `.gz`) downloaded
//! with curl, checked against the catalog's sha256 before anything is published, and
//! decompressed into a sparse file.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

use banger_exec::Cmd;
use banger_model::progress::ProgressSink;

use crate::catalog::{GuestInit, ImageEntry};
use crate::error::ImageError;
use crate::ext4::is_ext4_file;
use crate::recipe::BuildContext;
use crate::store::{ImageManifest, PublishRequest, recipe_key, sha256_file};

pub const BUNDLE_RECIPE_VERSION: u32 = 1;

/// A valid sha256 in lower case, or the error naming the bad value.
pub fn normalize_sha256(sha256: &str) -> Result<String, ImageError> {
    let trimmed = sha256.trim();
    let hex = trimmed.strip_prefix("sha256:").unwrap_or(trimmed);
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(hex.to_ascii_lowercase())
    } else {
        Err(ImageError::InvalidSha256(sha256.to_string()))
    }
}

/// True when the URL's path ends in `.gz` (query and fragment ignored).
pub fn is_gzip_url(url: &str) -> bool {
    url.split(['?', '#']).next().unwrap_or(url).ends_with(".gz")
}

pub(crate) async fn pull(
    ctx: &BuildContext<'_>,
    entry: &ImageEntry,
    url: &str,
    sha256: &str,
    init: GuestInit,
    progress: &dyn ProgressSink,
) -> Result<ImageManifest, ImageError> {
    let expected = normalize_sha256(sha256)?;
    let key = recipe_key(
        "bundle",
        BUNDLE_RECIPE_VERSION,
        &[url.to_string(), expected.clone()],
    );
    if let Some(manifest) = ctx.find(&key)? {
        return Ok(manifest);
    }
    let staging = ctx.store.staging()?;
    let download = staging.path().join("download");

    progress.stage_started("download");
    ctx.runner
        .run(
            &Cmd::new("curl")
                .args(["-fsSL", "--retry", "2", "-o"])
                .arg(&download)
                .arg(url)
                .timeout(Duration::from_secs(3600)),
        )
        .await
        .map_err(ImageError::command("download"))?;
    progress.stage_done("download", None);

    progress.stage_started("verify");
    let path = download.clone();
    let actual = tokio::task::spawn_blocking(move || sha256_file(&path))
        .await
        .map_err(ImageError::Join)??;
    if actual != expected {
        return Err(ImageError::DigestMismatch {
            url: url.to_string(),
            expected,
            actual,
        });
    }
    progress.stage_done("verify", None);

    let image = staging.path().join("image.ext4");
    if is_gzip_url(url) {
        progress.stage_started("decompress");
        let (from, to) = (download.clone(), image.clone());
        tokio::task::spawn_blocking(move || gunzip_sparse(&from, &to))
            .await
            .map_err(ImageError::Join)?
            .map_err(ImageError::io(format!("cannot decompress {url}")))?;
        fs_err::remove_file(&download)?;
        progress.stage_done("decompress", None);
    } else {
        fs_err::rename(&download, &image)?;
    }
    if !is_ext4_file(&image)? {
        return Err(ImageError::NotExt4 {
            what: url.to_string(),
        });
    }

    let request = PublishRequest {
        name: entry.name.clone(),
        key,
        kernel: entry.kernel.clone(),
        init,
        inputs: vec![format!("{url} sha256:{expected}")],
    };
    let store = ctx.store.clone();
    tokio::task::spawn_blocking(move || {
        let manifest = store.publish(&image, request);
        drop(staging);
        manifest
    })
    .await
    .map_err(ImageError::Join)?
}

/// Decompresses a gzip file, seeking over all-zero blocks so the result stays sparse
/// (a filesystem image is mostly zeros).
pub fn gunzip_sparse(from: &Path, to: &Path) -> std::io::Result<()> {
    const BLOCK: usize = 64 << 10;
    let mut decoder =
        flate2::read::GzDecoder::new(std::io::BufReader::new(fs_err::File::open(from)?));
    let mut out = fs_err::File::create(to)?;
    let mut buffer = vec![0u8; BLOCK];
    let mut length: u64 = 0;
    loop {
        let mut filled = 0;
        while filled < BLOCK {
            match decoder.read(&mut buffer[filled..])? {
                0 => break,
                n => filled += n,
            }
        }
        if filled == 0 {
            break;
        }
        let chunk = &buffer[..filled];
        if chunk.iter().all(|&b| b == 0) {
            out.seek(SeekFrom::Current(filled as i64))?;
        } else {
            out.write_all(chunk)?;
        }
        length += filled as u64;
    }
    // Trailing zeros were skipped by seeking; the length makes them part of the file.
    out.set_len(length)?;
    out.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn sha256_values() {
        let good = "AB".repeat(32);
        assert_eq!(normalize_sha256(&good).unwrap(), "ab".repeat(32));
        assert_eq!(
            normalize_sha256(&format!("sha256:{good}")).unwrap(),
            "ab".repeat(32)
        );
        for bad in ["", "abc", &"g".repeat(64), &"a".repeat(65)] {
            assert!(
                matches!(normalize_sha256(bad), Err(ImageError::InvalidSha256(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn gzip_urls() {
        let cases = [
            ("http://h/img.ext4", false),
            ("http://h/img.ext4.gz", true),
            ("http://h/img.ext4.gz?token=1", true),
            ("http://h/gz/img.ext4", false),
        ];
        for (url, expected) in cases {
            assert_eq!(is_gzip_url(url), expected, "{url}");
        }
    }

    #[test]
    fn gunzip_keeps_content_and_holes() {
        let dir = tempfile::tempdir().unwrap();
        let mut content = vec![0u8; 8 << 20];
        content[100..105].copy_from_slice(b"hello");
        content[(4 << 20)..(4 << 20) + 3].copy_from_slice(b"mid");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&content).unwrap();
        let from = dir.path().join("x.gz");
        fs_err::write(&from, gz.finish().unwrap()).unwrap();
        let to = dir.path().join("x");
        gunzip_sparse(&from, &to).unwrap();
        assert_eq!(fs_err::read(&to).unwrap(), content);
        let allocated = fs_err::metadata(&to).unwrap().blocks() * 512;
        assert!(allocated < (1 << 20), "allocated {allocated}");
    }
}
