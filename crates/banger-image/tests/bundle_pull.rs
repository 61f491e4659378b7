//! `Bundle` images end to end: a small ext4 made with `mkfs.ext4 -d` is served by a real
//! HTTP server (`python3 -m http.server` on 127.0.0.1), pulled raw and gzip-compressed,
//! and refused (typed error, nothing published) when the sha256 does not match.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use banger_exec::{Cmd, SystemRunner, run};
use banger_image::{Catalog, GuestInit, ImageEntry, ImageError, ImageRecipe, ImageService};
use banger_model::progress::NoProgress;
use sha2::{Digest, Sha256};

/// `python3 -m http.server` serving `dir`; killed on drop.
struct HttpServer {
    child: Child,
    port: u16,
}

impl HttpServer {
    /// Starts the server and waits for its "Serving HTTP ... port N" line (the port is
    /// picked by the OS).
    fn start(dir: &Path) -> HttpServer {
        let mut child = Command::new("python3")
            .args([
                "-u",
                "-m",
                "http.server",
                "0",
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 starts");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let port = line
            .split("port ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("unexpected http.server banner: {line:?}"));
        HttpServer { child, port }
    }

    fn url(&self, file: &str) -> String {
        format!("http://127.0.0.1:{}/{file}", self.port)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn bundle_catalog(entries: &[(&str, String, String)]) -> Catalog {
    Catalog {
        images: entries
            .iter()
            .map(|(name, url, sha256)| ImageEntry {
                name: name.to_string(),
                description: "test bundle".into(),
                recipe: ImageRecipe::Bundle {
                    url: url.clone(),
                    sha256: sha256.clone(),
                    init: GuestInit::Systemd,
                },
                kernel: "k".into(),
            })
            .collect(),
        kernels: Vec::new(),
    }
}

fn published_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for sub in ["", "keys"] {
        if let Ok(entries) = fs_err::read_dir(dir.join(sub)) {
            files.extend(
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.is_file()),
            );
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread")]
async fn bundle_download_verifies_sha256() {
    banger_requires::require!(Tool("python3"), Tool("curl"), Tool("mkfs.ext4"));
    let dir = tempfile::tempdir().unwrap();
    let serve = dir.path().join("serve");
    let content = dir.path().join("content");
    fs_err::create_dir_all(content.join("etc")).unwrap();
    fs_err::create_dir_all(&serve).unwrap();
    fs_err::write(content.join("etc/hostname"), "bundle\n").unwrap();
    let raw = serve.join("small.ext4");
    fs_err::File::create(&raw)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    run(&Cmd::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&content)
        .arg(&raw))
    .await
    .unwrap();
    let raw_bytes = fs_err::read(&raw).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw_bytes).unwrap();
    let gz_bytes = gz.finish().unwrap();
    fs_err::write(serve.join("small.ext4.gz"), &gz_bytes).unwrap();
    fs_err::write(serve.join("not-ext4.img"), b"hello").unwrap();

    let server = HttpServer::start(&serve);
    let catalog = bundle_catalog(&[
        ("raw", server.url("small.ext4"), sha256_hex(&raw_bytes)),
        ("gz", server.url("small.ext4.gz"), sha256_hex(&gz_bytes)),
        ("wrong", server.url("small.ext4"), "0".repeat(64)),
        ("missing", server.url("nope.ext4"), "0".repeat(64)),
        ("notext4", server.url("not-ext4.img"), sha256_hex(b"hello")),
    ]);
    let state = dir.path().join("state");
    let service = ImageService::new(
        dir.path().join("cache"),
        state.clone(),
        Arc::new(SystemRunner),
    )
    .with_catalog(catalog);
    let images = service.images_dir();

    // A wrong digest is a typed error and publishes nothing.
    let error = service.pull_image("wrong", &NoProgress).await.unwrap_err();
    match &error {
        ImageError::DigestMismatch {
            expected, actual, ..
        } => {
            assert_eq!(expected, &"0".repeat(64));
            assert_eq!(actual, &sha256_hex(&raw_bytes));
        }
        other => panic!("expected DigestMismatch, got {other:?}"),
    }
    assert_eq!(published_files(&images), Vec::<PathBuf>::new());
    let error = service
        .pull_image("missing", &NoProgress)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            ImageError::Command {
                step: "download",
                ..
            }
        ),
        "{error:?}"
    );
    let error = service
        .pull_image("notext4", &NoProgress)
        .await
        .unwrap_err();
    assert!(matches!(error, ImageError::NotExt4 { .. }), "{error:?}");
    assert_eq!(published_files(&images), Vec::<PathBuf>::new());

    let image = service.pull_image("raw", &NoProgress).await.unwrap();
    assert_eq!(image.digest, format!("sha256:{}", sha256_hex(&raw_bytes)));
    assert_eq!(image.init, GuestInit::Systemd);
    assert_eq!(image.size_bytes, 8 << 20);
    assert_eq!(fs_err::read(&image.path).unwrap(), raw_bytes);

    // The compressed bundle decompresses to the same bytes, hence the same file.
    let from_gz = service.pull_image("gz", &NoProgress).await.unwrap();
    assert_eq!(from_gz.digest, image.digest);
    assert_eq!(from_gz.path, image.path);

    // Pulled again: found by key without downloading (the server is gone).
    drop(server);
    let again = service.pull_image("raw", &NoProgress).await.unwrap();
    assert_eq!(again, image);
    // Nothing is left in staging.
    let leftovers: Vec<_> = fs_err::read_dir(&images)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(".staging"))
        .collect();
    assert!(leftovers.is_empty());
}
