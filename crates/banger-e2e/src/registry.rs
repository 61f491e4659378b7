//! A real OCI registry for tests: Debian's `docker-registry` (the CNCF distribution
//! server) on a random loopback port, storing in a temp dir, with its config written
//! there too; killed (by pid) and removed on drop. [`Registry::push`] uploads an image
//! through the registry's own HTTP API v2 (blob uploads, then the manifest), so what
//! banger later pulls went through a real registry's validation and storage.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

/// `(status, headers, body)` of one HTTP exchange.
pub type HttpAnswer = (u16, Vec<(String, String)>, Vec<u8>);

/// The registry program from Debian's `docker-registry` package.
pub const REGISTRY_PROGRAM: &str = "docker-registry";

/// A running registry.
#[derive(Debug)]
pub struct Registry {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

/// One blob of an image to push.
#[derive(Debug, Clone)]
pub struct Blob {
    pub media_type: String,
    pub bytes: Vec<u8>,
    /// For a layer: `sha256:` of its uncompressed tar (the config's `diff_ids`).
    pub diff_id: Option<String>,
}

impl Blob {
    pub fn new(media_type: &str, bytes: Vec<u8>) -> Blob {
        Blob {
            media_type: media_type.to_string(),
            bytes,
            diff_id: None,
        }
    }

    pub fn digest(&self) -> String {
        sha256_digest(&self.bytes)
    }

    fn descriptor(&self) -> serde_json::Value {
        serde_json::json!({
            "mediaType": self.media_type,
            "digest": self.digest(),
            "size": self.bytes.len(),
        })
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// `None` when the registry program is installed, else why a test must skip.
pub fn registry_missing() -> Option<String> {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {REGISTRY_PROGRAM}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    (!found).then(|| {
        format!("{REGISTRY_PROGRAM} is not installed (Debian package docker-registry; scripts/install-deps.sh installs it)")
    })
}

impl Registry {
    /// Starts a registry and waits until `GET /v2/` answers.
    pub fn start() -> Result<Registry> {
        let dir = tempfile::Builder::new()
            .prefix("banger-registry-")
            .tempdir()?;
        let port = {
            let probe = TcpListener::bind("127.0.0.1:0")?;
            probe.local_addr()?.port()
        };
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: {addr}\n",
                dir.path().join("data").display()
            ),
        )?;
        let log = std::fs::File::create(dir.path().join("registry.log"))?;
        let child = Command::new(REGISTRY_PROGRAM)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {REGISTRY_PROGRAM}"))?;
        let mut registry = Registry {
            child,
            addr,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, _, _)) = registry.request("GET", "/v2/", &[], &[]) {
                return Ok(registry);
            }
            if let Some(status) = registry.child.try_wait()? {
                bail!("{REGISTRY_PROGRAM} exited ({status}): {}", registry.log());
            }
            if Instant::now() > deadline {
                bail!(
                    "{REGISTRY_PROGRAM} did not answer within 30 s: {}",
                    registry.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// The registry's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Uploads `layers` and `config` and tags a manifest (OCI media types unless the
    /// blobs say otherwise) as `repository:tag`. Returns the manifest digest.
    pub fn push(
        &self,
        repository: &str,
        tag: &str,
        config: &Blob,
        layers: &[Blob],
    ) -> Result<String> {
        for blob in layers.iter().chain(std::iter::once(config)) {
            self.upload(repository, blob)?;
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config.descriptor(),
            "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
        });
        self.put_manifest(
            repository,
            tag,
            "application/vnd.oci.image.manifest.v1+json",
            &serde_json::to_vec(&manifest)?,
        )
    }

    /// Stores `body` as a manifest with `media_type` under `reference`.
    pub fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Result<String> {
        let (status, _, answer) = self.request(
            "PUT",
            &format!("/v2/{repository}/manifests/{reference}"),
            &[("Content-Type", media_type)],
            body,
        )?;
        if status != 201 {
            bail!(
                "manifest PUT answered {status}: {}",
                String::from_utf8_lossy(&answer)
            );
        }
        Ok(sha256_digest(body))
    }

    /// Uploads one blob (monolithic: POST for a session, then PUT with the digest).
    pub fn upload(&self, repository: &str, blob: &Blob) -> Result<()> {
        let (status, headers, body) = self.request(
            "POST",
            &format!("/v2/{repository}/blobs/uploads/"),
            &[],
            &[],
        )?;
        if status != 202 {
            bail!(
                "upload POST answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        let location = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("location"))
            .map(|(_, v)| v.clone())
            .context("upload POST without a Location")?;
        let path = location
            .strip_prefix(&format!("http://{}", self.addr))
            .unwrap_or(&location)
            .to_string();
        let separator = if path.contains('?') { '&' } else { '?' };
        let (status, _, body) = self.request(
            "PUT",
            &format!("{path}{separator}digest={}", blob.digest()),
            &[("Content-Type", "application/octet-stream")],
            &blob.bytes,
        )?;
        if status != 201 {
            bail!(
                "upload PUT answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(())
    }

    /// One HTTP/1.1 request on a fresh connection: `(status, headers, body)`.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<HttpAnswer> {
        let mut stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        let mut reader = BufReader::new(stream);
        let mut status_line = String::new();
        reader.read_line(&mut status_line)?;
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad status line {status_line:?}"))?;
        let mut response_headers = Vec::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line)?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                response_headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let mut answer = Vec::new();
        reader.read_to_end(&mut answer)?;
        Ok((status, response_headers, answer))
    }

    /// Where the registry keeps its data (to corrupt a blob in place, in tests).
    pub fn data_dir(&self) -> std::path::PathBuf {
        self._dir.path().join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tar archive written entry by entry with raw names (no path checks), so tests can
/// build both ordinary layers and hostile ones.
pub struct LayerBuilder {
    builder: tar::Builder<Vec<u8>>,
}

impl std::fmt::Debug for LayerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LayerBuilder")
    }
}

impl Default for LayerBuilder {
    fn default() -> Self {
        LayerBuilder::new()
    }
}

impl LayerBuilder {
    pub fn new() -> LayerBuilder {
        LayerBuilder {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    fn header(
        name: &str,
        kind: tar::EntryType,
        mode: u32,
        size: u64,
        owner: (u64, u64),
    ) -> tar::Header {
        let mut header = tar::Header::new_gnu();
        let gnu = header.as_gnu_mut().expect("a GNU header");
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_uid(owner.0);
        header.set_gid(owner.1);
        header.set_mtime(1_700_000_000);
        header.set_size(size);
        header
    }

    fn append(&mut self, mut header: tar::Header, data: &[u8]) -> &mut Self {
        header.set_cksum();
        self.builder
            .append(&header, data)
            .expect("append to a layer");
        self
    }

    pub fn dir(&mut self, name: &str, mode: u32) -> &mut Self {
        let header = Self::header(name, tar::EntryType::Directory, mode, 0, (0, 0));
        self.append(header, b"")
    }

    pub fn file(&mut self, name: &str, mode: u32, data: &[u8]) -> &mut Self {
        self.owned_file(name, mode, (0, 0), data)
    }

    pub fn owned_file(
        &mut self,
        name: &str,
        mode: u32,
        owner: (u64, u64),
        data: &[u8],
    ) -> &mut Self {
        let header = Self::header(
            name,
            tar::EntryType::Regular,
            mode,
            data.len() as u64,
            owner,
        );
        self.append(header, data)
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        let mut header = Self::header(name, tar::EntryType::Symlink, 0o777, 0, (0, 0));
        header.as_gnu_mut().expect("a GNU header").linkname[..target.len()]
            .copy_from_slice(target.as_bytes());
        self.append(header, b"")
    }

    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        let mut header = Self::header(name, tar::EntryType::Link, 0o644, 0, (0, 0));
        header.as_gnu_mut().expect("a GNU header").linkname[..target.len()]
            .copy_from_slice(target.as_bytes());
        self.append(header, b"")
    }

    pub fn char_device(&mut self, name: &str) -> &mut Self {
        let header = Self::header(name, tar::EntryType::Char, 0o600, 0, (0, 0));
        self.append(header, b"")
    }

    /// A file carrying extended attributes (as PAX `SCHILY.xattr.*` records).
    pub fn file_with_xattrs(
        &mut self,
        name: &str,
        mode: u32,
        data: &[u8],
        xattrs: &[(&str, &[u8])],
    ) -> &mut Self {
        let records: Vec<(String, &[u8])> = xattrs
            .iter()
            .map(|(k, v)| (format!("SCHILY.xattr.{k}"), *v))
            .collect();
        self.builder
            .append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), *v)))
            .expect("append PAX records");
        self.file(name, mode, data)
    }

    /// Copies every entry of an existing tar (e.g. a whole root filesystem).
    pub fn extend_from_tar(
        &mut self,
        tar_path: &Path,
        skip: &dyn Fn(&str) -> bool,
    ) -> Result<&mut Self> {
        let mut archive = tar::Archive::new(std::fs::File::open(tar_path)?);
        for entry in archive.entries()? {
            let mut entry = entry?;
            let path = entry.path()?.to_string_lossy().into_owned();
            if skip(&path) {
                continue;
            }
            let mut header = entry.header().clone();
            if let Some(extensions) = entry.pax_extensions()? {
                let records: Vec<(String, Vec<u8>)> = extensions
                    .filter_map(Result::ok)
                    .filter_map(|e| Some((e.key().ok()?.to_string(), e.value_bytes().to_vec())))
                    .collect();
                if !records.is_empty() {
                    self.builder.append_pax_extensions(
                        records.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
                    )?;
                }
            }
            let mut data = Vec::new();
            entry.read_to_end(&mut data)?;
            if let Some(link) = entry.link_name()? {
                let link = link.to_string_lossy().into_owned();
                self.builder.append_link(&mut header, &path, link)?;
            } else {
                self.builder
                    .append_data(&mut header, &path, data.as_slice())?;
            }
        }
        Ok(self)
    }

    /// The uncompressed tar.
    pub fn finish(&mut self) -> Vec<u8> {
        let builder = std::mem::replace(&mut self.builder, tar::Builder::new(Vec::new()));
        builder.into_inner().expect("finish a layer")
    }

    /// The tar, gzip-compressed, as an OCI layer blob.
    pub fn gzip(&mut self) -> Blob {
        let tar = self.finish();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).expect("gzip a layer");
        let mut blob = Blob::new(
            "application/vnd.oci.image.layer.v1.tar+gzip",
            gz.finish().expect("gzip a layer"),
        );
        blob.diff_id = Some(sha256_digest(&tar));
        blob
    }

    /// The tar, zstd-compressed, as an OCI layer blob.
    pub fn zstd(&mut self) -> Blob {
        let tar = self.finish();
        let mut blob = Blob::new(
            "application/vnd.oci.image.layer.v1.tar+zstd",
            zstd::encode_all(tar.as_slice(), 3).expect("zstd a layer"),
        );
        blob.diff_id = Some(sha256_digest(&tar));
        blob
    }
}

/// An OCI image config for linux/amd64 with `env` (banger does not read `diff_ids`).
pub fn image_config(env: &[&str]) -> Blob {
    image_config_for(env, &[])
}

/// An OCI image config for linux/amd64 with `env` and the `diff_ids` of `layers`, as
/// other tools (umoci) require.
pub fn image_config_for(env: &[&str], layers: &[Blob]) -> Blob {
    let diff_ids: Vec<String> = layers.iter().filter_map(|l| l.diff_id.clone()).collect();
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Env": env },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    });
    Blob::new(
        "application/vnd.oci.image.config.v1+json",
        serde_json::to_vec(&config).expect("serialize a config"),
    )
}

/// What the proxy does to responses for paths containing its `target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Cut the body after this many bytes, for the first `times` matching requests.
    Truncate { body_bytes: usize, times: usize },
}

/// A TCP proxy in front of a [`Registry`] that injects a [`Fault`] into the responses
/// for one path (e.g. a blob) and records every request line it forwards. It refuses
/// TLS (closes the connection), so clients fall back to plain HTTP as with the registry.
#[derive(Debug)]
pub struct FaultyProxy {
    addr: SocketAddr,
    requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FaultyProxy {
    pub fn start(upstream: &Registry, target: &str, fault: Fault) -> Result<FaultyProxy> {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::{Arc, Mutex};
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let upstream = upstream.addr;
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let hits = Arc::new(AtomicUsize::new(0));
        let (seen, stopping, target) =
            (Arc::clone(&requests), Arc::clone(&stop), target.to_string());
        let thread = std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let (seen, hits, target) = (Arc::clone(&seen), Arc::clone(&hits), target.clone());
                std::thread::spawn(move || {
                    let _ = relay(client, upstream, &target, fault, &seen, &hits);
                });
            }
        });
        Ok(FaultyProxy {
            addr,
            requests,
            stop,
            thread: Some(thread),
        })
    }

    /// `127.0.0.1:<port>`, to use in place of the registry's host.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// The request heads forwarded so far (request line and headers).
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for FaultyProxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn relay(
    mut client: TcpStream,
    upstream: SocketAddr,
    target: &str,
    fault: Fault,
    seen: &std::sync::Mutex<Vec<String>>,
    hits: &std::sync::atomic::AtomicUsize,
) -> Result<()> {
    use std::sync::atomic::Ordering;
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte)? == 0 {
            return Ok(());
        }
        if head.is_empty() && byte[0] == 0x16 {
            // A TLS ClientHello: this proxy speaks plain HTTP only.
            return Ok(());
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    if let Ok(mut seen) = seen.lock() {
        seen.push(text.trim_end().to_string());
    }
    let matches = text
        .lines()
        .next()
        .is_some_and(|line| line.contains(target));
    // One request per connection upstream, so the response ends with the connection.
    let forwarded = text.replacen("\r\n", "\r\nConnection: close\r\n", 1);
    let mut server = TcpStream::connect(upstream)?;
    server.write_all(forwarded.as_bytes())?;
    let mut response = Vec::new();
    server.read_to_end(&mut response)?;
    let Fault::Truncate { body_bytes, times } = fault;
    if matches && hits.fetch_add(1, Ordering::SeqCst) < times {
        let body_start = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(response.len(), |i| i + 4);
        let end = (body_start + body_bytes).min(response.len());
        client.write_all(&response[..end])?;
        return Ok(());
    }
    client.write_all(&response)?;
    Ok(())
}
