//! Test support: small tar archives built entry by entry, shaped like the .deb data
//! tars and the rootfs tarballs the real code reads (`./`-prefixed paths, root owner).

/// A tar archive under construction.
pub(crate) struct TarFixture {
    builder: tar::Builder<Vec<u8>>,
    mtime: u64,
}

impl TarFixture {
    /// An empty archive whose entries all get `mtime`.
    pub(crate) fn new(mtime: u64) -> TarFixture {
        TarFixture {
            builder: tar::Builder::new(Vec::new()),
            mtime,
        }
    }

    /// Appends one entry owned by uid 0 and `gid`: `data` for regular files, `link` as the
    /// target of symlinks and hard links.
    pub(crate) fn add(
        &mut self,
        path: &str,
        kind: tar::EntryType,
        mode: u32,
        gid: u64,
        data: &[u8],
        link: Option<&str>,
    ) {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(gid);
        header.set_mtime(self.mtime);
        header.set_size(data.len() as u64);
        match link {
            Some(link) => self
                .builder
                .append_link(&mut header, path, link)
                .expect("append a link entry"),
            None => self
                .builder
                .append_data(&mut header, path, data)
                .expect("append an entry"),
        }
    }

    /// The archive's bytes.
    pub(crate) fn finish(self) -> Vec<u8> {
        self.builder.into_inner().expect("finish the archive")
    }
}
