//! Warm templates: for the default image and every image a user opts in (`banger image
//! warm`), banger keeps a snapshot of a freshly booted guest per set of inputs, and
//! `vm run` / `vm create` restore from it instead of booting (see ARCHITECTURE.md "Warm
//! starts").
//!
//! A template is an ordinary snapshot (`warm.rs`) whose row carries a key: every input a
//! restore depends on, written out (image digest, kernel version, vCPUs, memory, disk,
//! NAT, the agent binary, the VMM's version and CPU model). A create whose inputs give
//! the same key restores from it; any other key boots cold, and that cold boot starts a
//! build of the template for its key in the background (never awaited by the command).
//! A new template replaces the ones of the same slot (image, vCPUs, memory, disk, NAT)
//! whose key is now stale.
//!
//! Building: a hidden VM (`template_builder` in its runtime, left out of `vm list`) is
//! booted cold, left to finish booting (on systemd guests, until `systemctl
//! is-system-running --wait` returns), snapshotted as the template, and deleted. Saved
//! any earlier, every clone would run the rest of the boot itself, competing with the
//! user's command for the guest's CPU, and could make keys (ssh's, say) before its
//! identity step reseeds the RNG, the same keys in every clone. The
//! builder's ssh host key is never read, so dropbear images have none in the template;
//! every restored guest gets its own machine-id and host keys from the identity step
//! anyway. A daemon killed mid-build leaves a builder VM (deleted by the startup
//! reconcile) and maybe a `creating` snapshot row (removed with its files, as for any
//! snapshot).
//!
//! Garbage collection: `image delete` removes the image's templates, `image cache prune`
//! removes every template whose image is gone or whose key is stale. A template a
//! running VM was restored from maps its RAM file into that VM: it is kept until the VM
//! stops.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use banger_model::VmRecord;
use banger_model::progress::NoProgress;
use banger_store::SnapshotRecord;

use crate::create::CreateRequest;
use crate::error::{VmError, chain};
use crate::service::{VmService, now};
use crate::warm::READY;

/// `started_from` of a VM restored from a template.
pub const STARTED_FROM_TEMPLATE: &str = "template";
/// `started_from` of a VM booted cold.
pub const STARTED_FROM_COLD: &str = "cold";
/// `started_from` of a VM made by `vm fork`.
pub const STARTED_FROM_SNAPSHOT: &str = "snapshot";

/// The progress stage that says how a new VM starts.
pub const START_STAGE: &str = "warm start";

/// Waits, in the template builder, until a systemd guest's boot is over (`running` or
/// `degraded`: a failed unit is the image's business, not a reason to keep no template).
/// Other inits have nothing to wait for: their boot is over when the agent answers.
const SETTLE_SCRIPT: &str =
    "if [ -d /run/systemd/system ]; then systemctl is-system-running --wait >/dev/null; fi; exit 0";

/// Takes the builder's own identity out before it is saved, so that no template holds a
/// machine-id or an ssh host key, on its disk or in its memory: a systemd guest's running
/// sshd is stopped and `/run/banger/sshd-stopped` left for the clones (each one's identity
/// step starts sshd once its own key is in place, see the agent's `identity.rs`), every
/// OpenSSH and Dropbear host key is removed, and `/etc/machine-id` is emptied (each
/// clone writes its own). Whatever fails fails the build: a template is never saved
/// with the builder's identity in it. `sync` puts the emptied files on the disk the
/// clones copy.
///
/// Removed files leave their text in freed guest memory (the page cache, the processes
/// that made the keys), which the template's RAM file would keep: a real guest's
/// template held an OpenSSH private key's PEM text after the keys were only removed.
/// So the key files are overwritten in place first (their cached pages become zeros),
/// the page cache is dropped, and one `dd` reads zeros into a buffer of nearly all the
/// memory left, so the kernel hands it every free page (zeroed) and takes them back
/// as zeros when it exits.
const SCRUB_SCRIPT: &str = r#"set -e
if [ -d /run/systemd/system ] && systemctl is-active --quiet ssh.service; then
  systemctl stop ssh.service
  if systemctl is-active --quiet ssh.service; then echo "sshd is still running" >&2; exit 1; fi
  rm -f /run/sshd.pid
  mkdir -p /run/banger
  : > /run/banger/sshd-stopped
fi
for key in /etc/ssh/ssh_host_*_key /etc/ssh/ssh_host_*_key.pub /etc/dropbear/dropbear_*_host_key; do
  [ -f "$key" ] || continue
  size=$(wc -c < "$key")
  if [ "$size" -gt 0 ]; then dd if=/dev/zero of="$key" bs="$size" count=1 conv=notrunc 2>/dev/null; fi
  rm -f "$key"
done
if [ -s /etc/machine-id ]; then : > /etc/machine-id; fi
sync
echo 3 > /proc/sys/vm/drop_caches
avail=$(sed -n 's/^MemAvailable: *\([0-9]*\) kB/\1/p' /proc/meminfo)
spare=$(( avail - 65536 ))
if [ "$spare" -gt 0 ]; then dd if=/dev/zero of=/dev/null bs="${spare}k" count=1 2>/dev/null; fi"#;

/// How long a builder's boot may go on after its agent answers; past it the template is
/// saved as it is (its clones then finish the boot themselves).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(180);

/// How long [`SCRUB_SCRIPT`] may take (stopping sshd, a `sync`).
const SCRUB_TIMEOUT: Duration = Duration::from_secs(60);

/// Everything a restore from a template depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateInputs {
    pub image: String,
    pub image_digest: String,
    pub kernel: String,
    pub kernel_version: String,
    pub vcpus: u32,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
    pub nat: bool,
    /// Identifies the agent binary patched into the guest (size and modification time).
    pub agent: String,
    /// The VMM's version, CPU model and accelerator (`VmmDriver::restore_inputs`).
    pub vmm: String,
}

impl TemplateInputs {
    /// The part of the key that names a template's place: a template of the same slot
    /// with another key is stale.
    pub fn slot(&self) -> String {
        format!(
            "image={} vcpus={} memory={} disk={} nat={}",
            self.image,
            self.vcpus,
            self.memory_bytes >> 20,
            self.disk_bytes >> 20,
            u8::from(self.nat)
        )
    }

    /// The whole key, readable (`vm snapshot show` prints it).
    pub fn key(&self) -> String {
        format!(
            "{} image_digest={} kernel={}@{} agent={} vmm={}",
            self.slot(),
            self.image_digest,
            self.kernel,
            self.kernel_version,
            self.agent,
            self.vmm
        )
    }

    /// The template's snapshot name: `template-<image>-<8 hex of the key>`.
    pub fn snapshot_name(&self) -> String {
        format!("template-{}-{:08x}", self.image, fnv1a(&self.key()) as u32)
    }
}

/// The slot part of a stored key (everything before ` image_digest=`).
pub fn slot_of(key: &str) -> &str {
    key.split(" image_digest=").next().unwrap_or(key)
}

/// 64-bit FNV-1a: stable across builds and platforms (names must not change when banger
/// is rebuilt).
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Why a new VM does not restore from a template, or `None` when it may.
pub fn cold_reason(req: &CreateRequest, enabled: bool, qemu: bool) -> Option<&'static str> {
    if req.cold {
        Some("--cold")
    } else if !enabled {
        Some("warm templates are off (BANGER_WARM_TEMPLATES=0)")
    } else if !qemu {
        Some(
            "warm templates are QEMU-only for now (Firecracker's snapshots are contract-tested but not yet run on a KVM host)",
        )
    } else if req.workspace.is_some() {
        Some("a workspace disk is attached at boot")
    } else if req.policy.is_some() {
        Some("the VM has a network policy")
    } else {
        None
    }
}

/// `<size>-<mtime>` of the agent binary; `missing` when it cannot be read.
pub fn agent_identity(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt as _;
    match std::fs::metadata(path) {
        Ok(meta) => format!("{}-{}", meta.len(), meta.mtime()),
        Err(_) => "missing".into(),
    }
}

impl VmService {
    /// True when new VMs of `image` get warm templates: the default image, and images
    /// opted in with `image warm`.
    pub fn image_is_warm(&self, image: &str) -> Result<bool, VmError> {
        if image == banger_model::catalog::DEFAULT_IMAGE {
            return Ok(true);
        }
        Ok(self
            .with_store(|s| s.warm_images())?
            .iter()
            .any(|name| name == image))
    }

    /// Opts `image` in to warm templates (or out, with `on == false`; its templates go).
    pub async fn set_image_warm(&self, image: &str, on: bool) -> Result<bool, VmError> {
        banger_model::ResourceName::parse_as("image name", image)
            .map_err(|e| VmError::BadRequest(e.to_string()))?;
        if on {
            self.with_store(|s| s.add_warm_image(image, &now()))
        } else {
            if image == banger_model::catalog::DEFAULT_IMAGE {
                return Err(VmError::BadRequest(format!(
                    "{image} is the default image and always has warm templates \
                     (BANGER_WARM_TEMPLATES=0 turns them off for the daemon)"
                )));
            }
            let changed = self.with_store(|s| s.remove_warm_image(image))?;
            self.delete_templates(|t| t.image == image).await;
            Ok(changed)
        }
    }

    /// The inputs a VM of `image` with this spec would restore from.
    pub(crate) fn template_inputs(
        &self,
        vm: &VmRecord,
        image: &banger_image::ImageArtifact,
        kernel: &banger_image::KernelArtifact,
    ) -> TemplateInputs {
        TemplateInputs {
            image: vm.image.clone(),
            image_digest: image.digest.clone(),
            kernel: kernel.name.clone(),
            kernel_version: kernel.version.clone(),
            vcpus: vm.spec.vcpus,
            memory_bytes: vm.spec.memory.bytes(),
            disk_bytes: vm.spec.disk.bytes(),
            nat: vm.nat,
            agent: agent_identity(&self.cfg.agent_binary),
            vmm: self.driver.restore_inputs(),
        }
    }

    /// The ready template with exactly this key.
    pub(crate) fn find_template(&self, key: &str) -> Result<Option<SnapshotRecord>, VmError> {
        Ok(self
            .list_snapshots()?
            .into_iter()
            .find(|s| s.state == READY && s.template_key.as_deref() == Some(key)))
    }

    /// Starts building the template for `inputs` in the background, unless one exists or
    /// is being built. Never waits for the build.
    pub(crate) fn spawn_template_build(self: &Arc<Self>, inputs: TemplateInputs) {
        let key = inputs.key();
        if matches!(self.find_template(&key), Ok(Some(_))) {
            return;
        }
        {
            let mut building = self
                .building_templates
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if !building.insert(key.clone()) {
                return;
            }
        }
        let service = Arc::clone(self);
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            match service.build_template(&inputs).await {
                Ok(template) => {
                    tracing::info!(
                        template = %template.name,
                        took_ms = started.elapsed().as_millis() as u64,
                        "warm template ready"
                    );
                    service.spawn_spare(&template.id);
                }
                Err(error) => {
                    tracing::warn!(image = %inputs.image, error = %chain(&error), "cannot build a warm template")
                }
            }
            service
                .building_templates
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
        });
    }

    /// Boots a hidden builder VM cold, snapshots it as the template, deletes it, and
    /// removes the templates the new one makes stale.
    async fn build_template(
        self: &Arc<Self>,
        inputs: &TemplateInputs,
    ) -> Result<SnapshotRecord, VmError> {
        let req = CreateRequest {
            name: None,
            image: Some(inputs.image.clone()),
            kernel: Some(inputs.kernel.clone()),
            vcpus: Some(inputs.vcpus),
            memory_mib: Some(inputs.memory_bytes >> 20),
            disk_mib: Some(inputs.disk_bytes >> 20),
            nat: inputs.nat,
            cold: true,
            template_builder: true,
            ..CreateRequest::default()
        };
        let builder = self.create(req, &NoProgress).await?;
        self.settle_builder(&builder).await;
        let key = inputs.key();
        let made = match self.scrub_builder(&builder).await {
            Ok(()) => {
                self.snapshot_as(
                    builder.id.as_str(),
                    Some(inputs.snapshot_name()),
                    Some(key.clone()),
                    &NoProgress,
                )
                .await
            }
            Err(error) => Err(error),
        };
        if let Err(error) = self.delete(builder.id.as_str(), true).await {
            tracing::warn!(vm = %builder.name, error = %chain(&error), "cannot delete the template builder");
        }
        let template = made?;
        let slot = inputs.slot();
        self.delete_templates(|t| {
            t.id != template.id
                && t.template_key
                    .as_deref()
                    .is_some_and(|k| slot_of(k) == slot && k != key)
        })
        .await;
        Ok(template)
    }

    /// Lets the builder's guest finish booting before it is saved (see [`SETTLE_SCRIPT`]).
    /// Never fails the build: a guest that cannot say is saved as it is.
    async fn settle_builder(&self, builder: &VmRecord) {
        let request = banger_proto::agent::ExecRequest {
            argv: vec!["/bin/sh".into(), "-c".into(), SETTLE_SCRIPT.into()],
            ..Default::default()
        };
        let started = std::time::Instant::now();
        let settled = tokio::time::timeout(
            SETTLE_TIMEOUT,
            self.exec(
                builder.id.as_str(),
                request,
                |_, _| {},
                std::future::pending::<()>(),
            ),
        )
        .await;
        match settled {
            Ok(Ok(0)) => tracing::info!(
                vm = %builder.name,
                secs = started.elapsed().as_secs_f64(),
                "template builder finished booting"
            ),
            Ok(Ok(code)) => {
                tracing::warn!(vm = %builder.name, code, "cannot tell whether the template builder finished booting")
            }
            Ok(Err(error)) => {
                tracing::warn!(vm = %builder.name, error = %chain(&error), "cannot wait for the template builder's boot")
            }
            Err(_) => tracing::warn!(
                vm = %builder.name,
                secs = SETTLE_TIMEOUT.as_secs(),
                "the template builder was still booting; saving it as it is"
            ),
        }
    }

    /// Runs [`SCRUB_SCRIPT`] in the builder; a failure (or no answer in
    /// [`SCRUB_TIMEOUT`]) means no template.
    async fn scrub_builder(&self, builder: &VmRecord) -> Result<(), VmError> {
        let mut stderr = Vec::new();
        let request = banger_proto::agent::ExecRequest {
            argv: vec!["/bin/sh".into(), "-c".into(), SCRUB_SCRIPT.into()],
            ..Default::default()
        };
        let ran = tokio::time::timeout(
            SCRUB_TIMEOUT,
            self.exec(
                builder.id.as_str(),
                request,
                |stream, bytes| {
                    if stream == banger_proto::agent::Stream::Stderr {
                        stderr.extend_from_slice(bytes);
                    }
                },
                std::future::pending::<()>(),
            ),
        )
        .await;
        let failed = |why: String| {
            Err(VmError::Conflict(format!(
                "cannot take the template builder's machine-id and ssh host keys out: {why}"
            )))
        };
        match ran {
            Ok(Ok(0)) => Ok(()),
            Ok(Ok(code)) => failed(format!(
                "exit {code}: {}",
                String::from_utf8_lossy(&stderr).trim()
            )),
            Ok(Err(error)) => failed(chain(&error)),
            Err(_) => failed(format!("no answer in {}s", SCRUB_TIMEOUT.as_secs())),
        }
    }

    /// Deletes the templates `select` picks, except those running VMs still map; returns
    /// the names removed.
    pub async fn delete_templates(&self, select: impl Fn(&SnapshotRecord) -> bool) -> Vec<String> {
        let Ok(snapshots) = self.list_snapshots() else {
            return Vec::new();
        };
        let mut removed = Vec::new();
        for template in snapshots
            .iter()
            .filter(|s| s.template_key.is_some() && s.state == READY && select(s))
        {
            match self.delete_snapshot(&template.id).await {
                Ok(_) => removed.push(template.name.clone()),
                Err(error) => {
                    tracing::info!(template = %template.name, error = %chain(&error), "template kept")
                }
            }
        }
        removed
    }

    /// `image cache prune`: removes templates whose image is gone or whose key no longer
    /// matches the image's current inputs. Returns the names removed.
    pub async fn prune_templates(&self) -> Result<Vec<String>, VmError> {
        let mut stale = Vec::new();
        for template in self.list_snapshots()? {
            let Some(key) = &template.template_key else {
                continue;
            };
            let image = self.with_store(|s| s.get_image(&template.image))?;
            let kernel = self.with_store(|s| s.get_kernel(&template.kernel))?;
            let current = match (image, kernel) {
                (Some(image), Some(kernel)) => {
                    let inputs = TemplateInputs {
                        image: template.image.clone(),
                        image_digest: image.digest,
                        kernel: kernel.name,
                        kernel_version: kernel.version,
                        vcpus: template.vcpus,
                        memory_bytes: template.memory_bytes,
                        disk_bytes: template.disk_bytes,
                        nat: template.nat,
                        agent: agent_identity(&self.cfg.agent_binary),
                        vmm: self.driver.restore_inputs(),
                    };
                    Some(inputs.key())
                }
                _ => None,
            };
            if current.as_deref() != Some(key.as_str()) {
                stale.push(template.id.clone());
            }
        }
        Ok(self.delete_templates(|t| stale.contains(&t.id)).await)
    }

    /// Startup reconcile: builder VMs a killed daemon left are deleted. Returns their
    /// names.
    pub(crate) async fn reconcile_builders(&self) -> Vec<String> {
        let mut removed = Vec::new();
        for vm in self.list().unwrap_or_default() {
            if !vm.runtime.template_builder {
                continue;
            }
            match self.delete(vm.id.as_str(), true).await {
                Ok(_) => removed.push(vm.name.to_string()),
                Err(error) => {
                    tracing::warn!(vm = %vm.name, error = %chain(&error), "cannot delete a template builder")
                }
            }
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> TemplateInputs {
        TemplateInputs {
            image: "tiny".into(),
            image_digest: "sha256:ab".into(),
            kernel: "debian-6.1-cloud".into(),
            kernel_version: "6.1.0-41-cloud-amd64".into(),
            vcpus: 1,
            memory_bytes: 512 << 20,
            disk_bytes: 1 << 30,
            nat: false,
            agent: "123-456".into(),
            vmm: "qemu 10.0.2 cpu=max accel=tcg".into(),
        }
    }

    #[test]
    fn every_input_changes_the_key_and_the_slot_keeps_only_its_part() {
        let base = inputs();
        type Change = Box<dyn Fn(&mut TemplateInputs)>;
        let changes: Vec<Change> = vec![
            Box::new(|i| i.image_digest = "sha256:cd".into()),
            Box::new(|i| i.kernel_version = "6.1.0-42-cloud-amd64".into()),
            Box::new(|i| i.kernel = "other".into()),
            Box::new(|i| i.vcpus = 2),
            Box::new(|i| i.memory_bytes = 768 << 20),
            Box::new(|i| i.disk_bytes = 2 << 30),
            Box::new(|i| i.nat = true),
            Box::new(|i| i.agent = "124-456".into()),
            Box::new(|i| i.vmm = "qemu 10.1.0 cpu=max accel=tcg".into()),
        ];
        for change in &changes {
            let mut other = base.clone();
            change(&mut other);
            assert_ne!(other.key(), base.key());
            assert_ne!(other.snapshot_name(), base.snapshot_name());
        }
        assert_eq!(slot_of(&base.key()), base.slot());
        let mut stale = base.clone();
        stale.image_digest = "sha256:new".into();
        assert_eq!(slot_of(&stale.key()), base.slot(), "same slot, stale key");
        let mut bigger = base.clone();
        bigger.memory_bytes = 1 << 30;
        assert_ne!(slot_of(&bigger.key()), base.slot(), "another slot");
    }

    #[test]
    fn names_are_stable_and_valid() {
        let name = inputs().snapshot_name();
        assert_eq!(name, inputs().snapshot_name());
        assert!(name.starts_with("template-tiny-"), "{name}");
        banger_model::ResourceName::parse_as("snapshot name", &name).unwrap();
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn cold_reasons() {
        let plain = CreateRequest::default();
        assert_eq!(cold_reason(&plain, true, true), None);
        let cold = CreateRequest {
            cold: true,
            ..CreateRequest::default()
        };
        assert_eq!(cold_reason(&cold, true, true), Some("--cold"));
        assert!(cold_reason(&plain, false, true).is_some());
        assert!(cold_reason(&plain, true, false).is_some());
        let policy = CreateRequest {
            policy: Some(banger_model::NetPolicy::default()),
            ..CreateRequest::default()
        };
        assert!(cold_reason(&policy, true, true).is_some());
    }

    #[test]
    fn agent_identity_follows_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent");
        assert_eq!(agent_identity(&path), "missing");
        std::fs::write(&path, b"abc").unwrap();
        assert!(agent_identity(&path).starts_with("3-"));
    }
}
