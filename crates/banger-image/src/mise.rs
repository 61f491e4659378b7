//! The pinned `mise` release the `debian-bookworm` image carries at `/usr/local/bin/mise`.
//! It comes from the npm registry's `@jdxcode/mise-linux-x64` package: the tarball is
//! downloaded once into the download cache (by rename, never partial), checked against the
//! registry's `dist.integrity` (an SRI `sha512-<base64>` pinned here) before anything reads
//! it, and `package/bin/mise` is taken out of it.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use banger_exec::{Cmd, CommandRunner};
use base64::Engine;
use sha2::{Digest, Sha512};

use crate::error::ImageError;

/// The pinned release (`npm view @jdxcode/mise-linux-x64 version`).
pub const MISE_VERSION: &str = "2026.9.15";
/// Its tarball (`dist.tarball`).
pub const MISE_TARBALL_URL: &str =
    "https://registry.npmjs.org/@jdxcode/mise-linux-x64/-/mise-linux-x64-2026.9.15.tgz";
/// Its integrity (`dist.integrity`, SRI).
pub const MISE_INTEGRITY: &str = "sha512-ButPFGyztN0Rk/HOHvHuf+W80CkvQRAjbDWHvhGJc3PnL3e2KhCYZIOyjx8wPkhr9VJa/7sJZXpxtt5JLjsfaQ==";
/// Where the binary lands in the image.
pub const MISE_GUEST_PATH: &str = "usr/local/bin/mise";
/// The binary's path inside the npm tarball.
const TARBALL_MEMBER: &str = "package/bin/mise";
/// The binary is about 150 MB; anything far larger is not the package we pinned.
const MAX_BINARY_BYTES: u64 = 512 << 20;

/// What the image recipe records as an input: a new pin changes the image's key.
pub fn recipe_input() -> String {
    format!("mise {MISE_VERSION} {MISE_TARBALL_URL} {MISE_INTEGRITY}")
}

/// The sha512 digest an SRI string (`sha512-<base64>`) names, or `None` when it is not one.
pub fn parse_sri_sha512(sri: &str) -> Option<Vec<u8>> {
    let encoded = sri.trim().strip_prefix("sha512-")?;
    let digest = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    (digest.len() == 64).then_some(digest)
}

/// The SRI string of `bytes` read from `reader`.
pub fn sri_sha512(mut reader: impl Read) -> std::io::Result<String> {
    let mut hasher = Sha512::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(format!(
        "sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(hasher.finalize())
    ))
}

/// Checks `path` against `integrity` (SRI sha512).
pub fn verify(path: &Path, url: &str, integrity: &str) -> Result<(), ImageError> {
    if parse_sri_sha512(integrity).is_none() {
        return Err(ImageError::InvalidIntegrity(integrity.to_string()));
    }
    let actual = sri_sha512(fs_err::File::open(path)?)
        .map_err(ImageError::io(format!("cannot read {}", path.display())))?;
    if actual != integrity.trim() {
        return Err(ImageError::IntegrityMismatch {
            url: url.to_string(),
            expected: integrity.to_string(),
            actual,
        });
    }
    Ok(())
}

/// `package/bin/mise` of an npm tarball (gzip'd tar), as bytes.
pub fn binary_from_tarball(tarball: &Path) -> Result<Vec<u8>, ImageError> {
    let file = fs_err::File::open(tarball)?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let context = || format!("cannot read {}", tarball.display());
    for entry in archive.entries().map_err(ImageError::io(context()))? {
        let mut entry = entry.map_err(ImageError::io(context()))?;
        let is_binary = entry.header().entry_type().is_file()
            && entry.path().map_err(ImageError::io(context()))?.as_os_str() == TARBALL_MEMBER;
        if !is_binary {
            continue;
        }
        if entry.size() > MAX_BINARY_BYTES {
            break;
        }
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry
            .read_to_end(&mut bytes)
            .map_err(ImageError::io(context()))?;
        return Ok(bytes);
    }
    Err(ImageError::FileNotInDeb {
        deb: tarball.to_path_buf(),
        file: TARBALL_MEMBER.to_string(),
    })
}

/// The cached, verified tarball of the pinned release in `cache_dir` (downloaded with curl
/// into a temporary file and renamed once verified). A cached file is checked again.
pub async fn fetch_tarball(
    runner: &dyn CommandRunner,
    cache_dir: &Path,
) -> Result<PathBuf, ImageError> {
    fetch_verified(runner, cache_dir, MISE_TARBALL_URL, MISE_INTEGRITY).await
}

pub(crate) async fn fetch_verified(
    runner: &dyn CommandRunner,
    cache_dir: &Path,
    url: &str,
    integrity: &str,
) -> Result<PathBuf, ImageError> {
    fs_err::create_dir_all(cache_dir)?;
    let name = url.rsplit('/').next().unwrap_or("download.tgz");
    let cached = cache_dir.join(name);
    if cached.is_file() {
        let (path, url_owned, sri) = (cached.clone(), url.to_string(), integrity.to_string());
        let checked = tokio::task::spawn_blocking(move || verify(&path, &url_owned, &sri))
            .await
            .map_err(ImageError::Join)?;
        match checked {
            Ok(()) => return Ok(cached),
            Err(error) => {
                tracing::warn!(%error, "the cached download does not verify; fetching it again");
                fs_err::remove_file(&cached)?;
            }
        }
    }
    let partial = tempfile::Builder::new()
        .prefix(".download-")
        .tempdir_in(cache_dir)
        .map_err(ImageError::io(format!(
            "cannot create a download directory in {}",
            cache_dir.display()
        )))?;
    let download = partial.path().join(name);
    runner
        .run(
            &Cmd::new("curl")
                .args(["-fsSL", "--retry", "2", "-o"])
                .arg(&download)
                .arg(url)
                .timeout(Duration::from_secs(1800)),
        )
        .await
        .map_err(ImageError::command("download mise"))?;
    let (path, url_owned, sri) = (download.clone(), url.to_string(), integrity.to_string());
    tokio::task::spawn_blocking(move || verify(&path, &url_owned, &sri))
        .await
        .map_err(ImageError::Join)??;
    fs_err::rename(&download, &cached)?;
    Ok(cached)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tarball(dir: &Path, member: &str, body: &[u8]) -> PathBuf {
        let path = dir.join("pkg.tgz");
        let file = fs_err::File::create(&path).unwrap();
        let mut builder =
            tar::Builder::new(flate2::write::GzEncoder::new(file, Default::default()));
        for (name, data) in [("package/README.md", &b"readme"[..]), (member, body)] {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o755);
            header.set_cksum();
            builder.append_data(&mut header, name, data).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap();
        path
    }

    #[test]
    fn the_pinned_integrity_is_an_sri_sha512() {
        assert!(parse_sri_sha512(MISE_INTEGRITY).is_some());
        assert!(MISE_TARBALL_URL.ends_with(&format!("-{MISE_VERSION}.tgz")));
        assert!(parse_sri_sha512("sha256-abcd").is_none());
        assert!(parse_sri_sha512("sha512-notbase64!").is_none());
        assert!(parse_sri_sha512("sha512-YWJj").is_none(), "wrong length");
    }

    #[test]
    fn sri_of_known_bytes() {
        // `printf abc | openssl dgst -sha512 -binary | base64`
        assert_eq!(
            sri_sha512(&b"abc"[..]).unwrap(),
            "sha512-3a81oZNherrMQXNJriBBMRLm+k6JqX6iCp7u5ktV05ohkpkqJ0/BqDa6PCOj/uu9RU1EI2Q86A4qmslPpUyknw=="
        );
    }

    #[test]
    fn verify_accepts_the_right_digest_and_names_both_on_a_wrong_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs_err::write(&path, b"abc").unwrap();
        let good = sri_sha512(&b"abc"[..]).unwrap();
        verify(&path, "http://x/f", &good).unwrap();
        let bad = sri_sha512(&b"abd"[..]).unwrap();
        let error = verify(&path, "http://x/f", &bad).unwrap_err().to_string();
        assert!(error.contains("http://x/f") && error.contains(&bad) && error.contains(&good));
        assert!(matches!(
            verify(&path, "http://x/f", "md5-xyz"),
            Err(ImageError::InvalidIntegrity(_))
        ));
    }

    #[test]
    fn the_binary_comes_out_of_the_tarball() {
        let dir = tempfile::tempdir().unwrap();
        let path = tarball(dir.path(), "package/bin/mise", b"\x7fELF fake");
        assert_eq!(binary_from_tarball(&path).unwrap(), b"\x7fELF fake");
        let other = tarball(dir.path(), "package/bin/other", b"x");
        assert!(matches!(
            binary_from_tarball(&other),
            Err(ImageError::FileNotInDeb { .. })
        ));
    }
}
