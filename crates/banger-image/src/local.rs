//! Images made from local files: `image register` (an ext4 file the user has) and
//! `image promote` (a stopped VM's root disk). The file is copied into the image store
//! (a reflink where the filesystem has them, else a sparse copy), checked on the copy, so
//! nothing can change between the check and the publication, and published read-only.
//! A registered file must pass `e2fsck -n` as it is; a promoted disk is repaired like a
//! VM disk before boot (`e2fsck -fy`) and loses its ssh host keys, which belonged to
//! that one VM.

use std::path::Path;
use std::time::Duration;

use banger_exec::{Cmd, CommandRunner};
use banger_model::progress::ProgressSink;

use crate::catalog::GuestInit;
use crate::error::ImageError;
use crate::ext4::is_ext4_file;
use crate::store::{ImageManifest, ImageStore, PublishRequest, recipe_key};

/// Which local source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalSource {
    Register,
    Promote,
}

/// Host keys a promoted disk must not pass on to every VM made from it.
const HOST_KEYS: [&str; 9] = [
    "/etc/dropbear/dropbear_ed25519_host_key",
    "/etc/dropbear/dropbear_rsa_host_key",
    "/etc/dropbear/dropbear_ecdsa_host_key",
    "/etc/ssh/ssh_host_ed25519_key",
    "/etc/ssh/ssh_host_ed25519_key.pub",
    "/etc/ssh/ssh_host_rsa_key",
    "/etc/ssh/ssh_host_rsa_key.pub",
    "/etc/ssh/ssh_host_ecdsa_key",
    "/etc/ssh/ssh_host_ecdsa_key.pub",
];

/// Copies, checks and publishes `source` as image `name`.
#[expect(
    clippy::too_many_arguments,
    reason = "the service's one call passes them through"
)]
pub(crate) async fn publish(
    runner: &dyn CommandRunner,
    store: &ImageStore,
    source: &Path,
    name: &str,
    kernel: &str,
    kind: LocalSource,
    init: Option<GuestInit>,
    progress: &dyn ProgressSink,
) -> Result<(ImageManifest, GuestInit), ImageError> {
    let meta = fs_err::metadata(source)?;
    if !meta.is_file() {
        return Err(ImageError::NotExt4 {
            what: source.display().to_string(),
        });
    }
    if !is_ext4_file(source)? {
        return Err(ImageError::NotExt4 {
            what: source.display().to_string(),
        });
    }
    progress.stage_started("copy");
    let staging = store.staging()?;
    let image = staging.path().join("image.ext4");
    runner
        .run(
            &Cmd::new("cp")
                .args(["--sparse=always", "--reflink=auto"])
                .arg(source)
                .arg(&image)
                .timeout(Duration::from_secs(3600)),
        )
        .await
        .map_err(ImageError::command("copy the image file"))?;
    progress.stage_done("copy", Some(&format!("{} MiB", meta.len() >> 20)));

    progress.stage_started("check filesystem");
    match kind {
        LocalSource::Register => {
            let check = Cmd::new("e2fsck")
                .args(["-f", "-n"])
                .arg(&image)
                .timeout(Duration::from_secs(600));
            if let Err(error) = runner.run(&check).await {
                return Err(ImageError::Unclean {
                    what: source.display().to_string(),
                    source: Box::new(error),
                });
            }
        }
        LocalSource::Promote => {
            let repair = Cmd::new("e2fsck")
                .arg("-fy")
                .arg(&image)
                .timeout(Duration::from_secs(600));
            match runner.run(&repair).await {
                Ok(_) => {}
                Err(error) if matches!(error.exit_code(), Some(1 | 2)) => {}
                Err(error) => {
                    return Err(ImageError::Unclean {
                        what: source.display().to_string(),
                        source: Box::new(error),
                    });
                }
            }
            let script = staging.path().join("strip.debugfs");
            let commands: Vec<String> = HOST_KEYS.iter().map(|k| format!("rm {k}")).collect();
            fs_err::write(&script, commands.join("\n") + "\n")?;
            runner
                .run(
                    &Cmd::new("debugfs")
                        .args(["-w", "-f"])
                        .arg(&script)
                        .arg(&image)
                        .timeout(Duration::from_secs(120)),
                )
                .await
                .map_err(ImageError::command("debugfs (remove host keys)"))?;
        }
    }
    let init = match init {
        Some(init) => init,
        None => detect_init(runner, &image).await,
    };
    progress.stage_done("check filesystem", Some(init_label(init)));

    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let request = PublishRequest {
        name: name.to_string(),
        // Local images are never looked up by inputs; the key only has to be unique.
        key: recipe_key("local", 1, &[name.to_string(), created.to_string()]),
        kernel: kernel.to_string(),
        init,
        inputs: vec![source.display().to_string()],
    };
    let store = store.clone();
    let manifest = tokio::task::spawn_blocking(move || {
        let published = store.publish(&image, request);
        drop(staging);
        published
    })
    .await
    .map_err(ImageError::Join)??;
    Ok((manifest, init))
}

/// systemd when the image has it, else busybox-style (the image's rcS starts
/// `/usr/local/sbin/banger-agent`, as banger's own images do).
async fn detect_init(runner: &dyn CommandRunner, image: &Path) -> GuestInit {
    for path in ["/lib/systemd/systemd", "/usr/lib/systemd/systemd"] {
        let stat = Cmd::new("debugfs")
            .arg("-R")
            .arg(format!("stat {path}"))
            .arg(image);
        if let Ok(out) = runner.run(&stat).await
            && out.stdout_text().contains("Type: regular")
        {
            return GuestInit::Systemd;
        }
    }
    GuestInit::Busybox
}

fn init_label(init: GuestInit) -> &'static str {
    match init {
        GuestInit::Systemd => "systemd",
        GuestInit::Busybox => "busybox-style init",
    }
}
