//! The image part of `cargo xtask bench` (alone: `cargo xtask bench images`): OCI import
//! against a real registry on loopback (Debian's `docker-registry`), all in one run with
//! interleaved rounds and medians:
//!
//! - `banger image import` of a three-layer image (the `tiny` tree split by directory,
//!   gzip) with a cold layer cache, vs the reference pipeline of standard tools on the
//!   same image: `skopeo copy` (registry to an OCI layout) + `umoci unpack` (layers to a
//!   directory, as root so owners are kept) + `mkfs.ext4 -d` (directory to ext4, the
//!   same size banger chose);
//! - the import of a second image that shares the first one's base layers (warm cache);
//! - `image delete` and `image cache prune`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use banger_e2e::registry::{LayerBuilder, Registry, image_config_for};

use super::{Bench, median};

const ROUNDS: usize = 3;

/// Runs the image benchmarks against `bench`'s daemon; returns the BENCHMARKS.md section.
pub(super) fn section(bench: &Bench) -> Result<String> {
    for tool in ["docker-registry", "skopeo", "umoci"] {
        if !tool_exists(tool) {
            return Ok(format!(
                "\n## Images\n\nNot measured: `{tool}` is not installed (scripts/install-deps.sh installs it).\n"
            ));
        }
    }
    let cache = bench.root.join("target/bench-cache");
    let tar = cache.join("tiny-rootfs.tar");
    eprintln!("bench: exporting the tiny tree and pushing it as OCI images");
    let runtime = tokio::runtime::Runtime::new()?;
    let service = banger_image::ImageService::new(
        cache.clone(),
        cache.clone(),
        Arc::new(banger_exec::SystemRunner),
    );
    runtime
        .block_on(service.export_tiny_tar(&tar, &banger_model::progress::NoProgress))
        .context("cannot export the tiny tree")?;

    let registry = Registry::start()?;
    // Three layers: /usr/lib, the rest of /usr, everything else.
    let in_lib = |p: &str| p.trim_start_matches("./").starts_with("usr/lib");
    let in_usr = |p: &str| p.trim_start_matches("./").starts_with("usr");
    let lib = LayerBuilder::new()
        .extend_from_tar(&tar, &|p| !in_lib(p))?
        .gzip();
    let usr = LayerBuilder::new()
        .extend_from_tar(&tar, &|p| in_lib(p) || !in_usr(p))?
        .gzip();
    let rest = LayerBuilder::new()
        .extend_from_tar(&tar, &|p| in_usr(p))?
        .gzip();
    let env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"];
    let layers = [lib.clone(), usr.clone(), rest.clone()];
    let config = image_config_for(&env, &layers);
    let compressed: usize = layers.iter().map(|l| l.bytes.len()).sum();
    registry.push("bench/tiny", "v1", &config, &layers)?;
    // The second image: the same two base layers, its own top.
    let top = LayerBuilder::new()
        .extend_from_tar(&tar, &|p| in_usr(p))?
        .file(
            "etc/second-image",
            0o644,
            b"another image on the same base\n",
        )
        .gzip();
    let second_layers = [lib, usr, top];
    let config2 = image_config_for(&env, &second_layers);
    registry.push("bench/tiny2", "v1", &config2, &second_layers)?;

    let first = format!("{}/bench/tiny:v1", registry.host());
    let second = format!("{}/bench/tiny2:v1", registry.host());
    let scratch = bench.dir.join("oci-bench");
    let mut banger_cold = Vec::new();
    let mut banger_shared = Vec::new();
    let mut reference = Vec::new();
    let mut delete = Vec::new();
    let mut prune = Vec::new();
    let mut size_bytes = 0u64;
    for round in 0..ROUNDS {
        // Cold: no layer in the cache, no earlier import (banger's extracted busybox, a
        // .deb input shared with the kernel build, stays: it is not part of an image).
        let _ = std::fs::remove_dir_all(cache.join("oci/layers"));
        let _ = std::fs::remove_dir_all(cache.join("oci/blobs"));
        let t = Instant::now();
        let image = bench.json(&["image", "import", &first, "--name", "bench-a"])?;
        banger_cold.push(t.elapsed().as_secs_f64());
        size_bytes = image["size_bytes"].as_u64().context("no size")?;

        // The reference pipeline on the same image, to an ext4 of the same size.
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&scratch)?;
        let t = Instant::now();
        reference_pipeline(&first, &scratch, size_bytes)?;
        reference.push(t.elapsed().as_secs_f64());

        // Warm: the second image shares two of its three layers with the first.
        let t = Instant::now();
        bench.json(&["image", "import", &second, "--name", "bench-b"])?;
        banger_shared.push(t.elapsed().as_secs_f64());

        let t = Instant::now();
        bench.banger(&["image", "delete", "bench-b"])?;
        bench.banger(&["image", "delete", "bench-a"])?;
        delete.push(t.elapsed().as_secs_f64() / 2.0);
        let t = Instant::now();
        let pruned = bench.json(&["image", "cache", "prune"])?;
        prune.push(t.elapsed().as_secs_f64());
        eprintln!(
            "bench: images round {round}: import cold {:.2}s, skopeo+umoci+mkfs {:.2}s, import on a shared base {:.2}s, delete {:.3}s, prune {:.3}s (freed {} bytes)",
            banger_cold[round],
            reference[round],
            banger_shared[round],
            delete[round],
            prune[round],
            pruned["freed_bytes"]
        );
    }
    let _ = std::fs::remove_dir_all(&scratch);
    let cold = median(&mut banger_cold.clone());
    let pipeline = median(&mut reference.clone());
    let shared = median(&mut banger_shared.clone());
    Ok(format!(
        "\n## Images: OCI import (tiny tree as a 3-layer gzip image, {} MiB compressed, from `docker-registry` on loopback; median of {ROUNDS})\n\n\
         | what | seconds |\n| --- | --- |\n\
         | `banger image import` (whole CLI: manifest, layers, flatten, init, `mkfs.ext4 -d -`, publish), cold layer cache | {cold:.2} |\n\
         | `skopeo copy` + `umoci unpack` + `mkfs.ext4 -d` (same image, same ext4 size) | {pipeline:.2} |\n\
         | `banger image import` of a second image sharing 2 of its 3 layers (warm cache) | {shared:.2} |\n\
         | `banger image delete` (per image) | {:.3} |\n\
         | `banger image cache prune` (the layers and packages the deleted images left) | {:.3} |\n\n\
         banger vs the standard tools: **{:.2}x** (target: <= 1.0x). Second import on a shared base vs the first: **{:.1}x faster** (target: >= 2x). \
         The ext4 is {} MiB apparent. From a registry on loopback the download is almost free, so what a shared base saves is fetching and decompressing its layers \
         (the tree then points into the cached uncompressed layers); `mkfs.ext4 -d` and hashing the new image, which every import pays, stay. \
         The further the registry, the larger that saving. Raw: banger cold {banger_cold:.2?}, tools {reference:.2?}, shared base {banger_shared:.2?}.\n",
        compressed >> 20,
        median(&mut delete.clone()),
        median(&mut prune.clone()),
        cold / pipeline,
        cold / shared,
        size_bytes >> 20,
    ))
}

/// `skopeo copy` + `umoci unpack` + `mkfs.ext4 -d` into `scratch`.
fn reference_pipeline(reference: &str, scratch: &Path, size_bytes: u64) -> Result<()> {
    let layout = scratch.join("layout");
    let bundle = scratch.join("bundle");
    let image = scratch.join("image.ext4");
    run(Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false", "-q"])
        .arg(format!("docker://{reference}"))
        .arg(format!("oci:{}:v1", layout.display())))?;
    run(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:v1", layout.display()))
        .arg(&bundle))?;
    std::fs::File::create(&image)?.set_len(size_bytes)?;
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "rootfs", "-m", "0", "-d"])
        .arg(bundle.join("rootfs"))
        .arg(&image))?;
    Ok(())
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.stdout(Stdio::null()).status()?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

fn tool_exists(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `report` with its `## Images` section replaced by `section` (appended when absent).
pub(super) fn splice(report: &str, section: &str) -> String {
    super::splice_section(report, "Images", section)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_is_replaced_in_place() {
        let report = "# B\n\n## One\nx\n\n## Images: old\nold\n\n## Two\ny\n";
        assert_eq!(
            splice(report, "\n## Images: new\nnew\n"),
            "# B\n\n## One\nx\n\n## Images: new\nnew\n\n## Two\ny\n"
        );
        assert_eq!(splice("# B\n", "\n## Images\nz\n"), "# B\n\n## Images\nz\n");
    }
}
