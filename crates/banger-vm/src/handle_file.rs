//! The per-VM mirror of the in-memory VMM handle: written atomically after launch, read
//! at daemon start to reattach, removed when the process is gone.

use std::path::Path;

use banger_vmm::VmmHandle;

pub fn write(path: &Path, handle: &VmmHandle) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_vec_pretty(handle).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

pub fn read(path: &Path) -> Option<VmmHandle> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}
