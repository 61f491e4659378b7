//! What an image recipe gets to work with: the command runner, the image store, the
//! shared .deb cache, the resolution memo and where the host keeps its apt state.

use std::path::Path;

use banger_exec::CommandRunner;

use crate::resolve_memo::ResolveMemo;
use crate::store::ImageStore;

#[derive(Debug, Clone, Copy)]
pub(crate) struct BuildContext<'a> {
    pub runner: &'a dyn CommandRunner,
    pub store: &'a ImageStore,
    /// `<cache>/debs`
    pub debs_dir: &'a Path,
    pub memo: &'a ResolveMemo,
    /// The host's `/etc/apt` (sources, for the mirror).
    pub apt_dir: &'a Path,
    /// The host's `/var/lib/apt/lists` (fingerprinted to memoize resolutions).
    pub lists_dir: &'a Path,
    /// Build even when an image with the same inputs is published (`image pull --force`).
    pub force: bool,
}

impl BuildContext<'_> {
    /// The image published under `key`, unless this is a forced rebuild.
    pub fn find(
        &self,
        key: &str,
    ) -> Result<Option<crate::store::ImageManifest>, crate::ImageError> {
        if self.force {
            Ok(None)
        } else {
            self.store.find(key)
        }
    }
}
