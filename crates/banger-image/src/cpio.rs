//! A writer for the cpio "newc" format (the one the kernel unpacks as an initramfs).
//! Entries are written as given, with fixed mtimes and increasing inode numbers, so the
//! same contents always give the same bytes. Device nodes are plain entries here, which
//! is how an ordinary user ships `/dev/console` without `mknod`.

use std::io::{self, Write};

const MAGIC: &str = "070701";
const TRAILER: &str = "TRAILER!!!";

/// File-type bits of `st_mode`.
pub const S_IFDIR: u32 = 0o040000;
pub const S_IFREG: u32 = 0o100000;
pub const S_IFLNK: u32 = 0o120000;
pub const S_IFCHR: u32 = 0o020000;

/// Writes newc entries to `W`; call [`CpioWriter::finish`] to add the trailer.
#[derive(Debug)]
pub struct CpioWriter<W: Write> {
    out: W,
    next_inode: u32,
    written: u64,
}

/// The header fields of one entry that vary between entries.
struct Entry<'a> {
    name: &'a str,
    mode: u32,
    nlink: u32,
    data: &'a [u8],
    rdev: (u32, u32),
}

impl<W: Write> CpioWriter<W> {
    pub fn new(out: W) -> CpioWriter<W> {
        CpioWriter {
            out,
            next_inode: 1,
            written: 0,
        }
    }

    /// A directory; `path` is relative (`bin`, `lib/modules`), parents first.
    pub fn dir(&mut self, path: &str, perm: u32) -> io::Result<()> {
        self.entry(Entry {
            name: path,
            mode: S_IFDIR | (perm & 0o7777),
            nlink: 2,
            data: &[],
            rdev: (0, 0),
        })
    }

    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) -> io::Result<()> {
        self.entry(Entry {
            name: path,
            mode: S_IFREG | (perm & 0o7777),
            nlink: 1,
            data,
            rdev: (0, 0),
        })
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> io::Result<()> {
        self.entry(Entry {
            name: path,
            mode: S_IFLNK | 0o777,
            nlink: 1,
            data: target.as_bytes(),
            rdev: (0, 0),
        })
    }

    /// A character device node, e.g. `dev/console` (5, 1).
    pub fn char_device(&mut self, path: &str, perm: u32, major: u32, minor: u32) -> io::Result<()> {
        self.entry(Entry {
            name: path,
            mode: S_IFCHR | (perm & 0o7777),
            nlink: 1,
            data: &[],
            rdev: (major, minor),
        })
    }

    /// Writes the `TRAILER!!!` entry and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.write_header(
            0,
            &Entry {
                name: TRAILER,
                mode: 0,
                nlink: 1,
                data: &[],
                rdev: (0, 0),
            },
        )?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn entry(&mut self, entry: Entry<'_>) -> io::Result<()> {
        let inode = self.next_inode;
        self.next_inode += 1;
        self.write_header(inode, &entry)?;
        self.out.write_all(entry.data)?;
        self.written += entry.data.len() as u64;
        self.pad()
    }

    fn write_header(&mut self, inode: u32, entry: &Entry<'_>) -> io::Result<()> {
        let name_size = entry.name.len() + 1;
        let size = u32::try_from(entry.data.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "cpio entry over 4 GiB"))?;
        let fields = [
            inode,
            entry.mode,
            0, // uid: root
            0, // gid: root
            entry.nlink,
            0, // mtime: fixed, for reproducible output
            size,
            0, // devmajor
            0, // devminor
            entry.rdev.0,
            entry.rdev.1,
            name_size as u32,
            0, // check
        ];
        let mut header = String::with_capacity(110);
        header.push_str(MAGIC);
        for field in fields {
            header.push_str(&format!("{field:08x}"));
        }
        self.out.write_all(header.as_bytes())?;
        self.out.write_all(entry.name.as_bytes())?;
        self.out.write_all(&[0])?;
        self.written += (header.len() + name_size) as u64;
        self.pad()
    }

    /// newc aligns both the header+name and the data to 4 bytes.
    fn pad(&mut self) -> io::Result<()> {
        let padding = (4 - (self.written % 4) as usize) % 4;
        self.out.write_all(&[0u8; 3][..padding])?;
        self.written += padding as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads entries back: `(name, mode, nlink, rdevmajor, rdevminor, data)`.
    fn parse(mut bytes: &[u8]) -> Vec<(String, u32, u32, u32, u32, Vec<u8>)> {
        let total = bytes.len();
        let mut entries = Vec::new();
        loop {
            let offset = total - bytes.len();
            assert_eq!(offset % 4, 0, "header at unaligned offset {offset}");
            assert_eq!(&bytes[..6], MAGIC.as_bytes());
            let field = |i: usize| {
                u32::from_str_radix(
                    std::str::from_utf8(&bytes[6 + i * 8..14 + i * 8]).unwrap(),
                    16,
                )
                .unwrap()
            };
            let (mode, nlink, size, major, minor, name_size) = (
                field(1),
                field(4),
                field(6) as usize,
                field(9),
                field(10),
                field(11) as usize,
            );
            assert_eq!((field(2), field(3), field(5), field(12)), (0, 0, 0, 0));
            let name = std::str::from_utf8(&bytes[110..110 + name_size - 1])
                .unwrap()
                .to_string();
            assert_eq!(bytes[110 + name_size - 1], 0);
            let data_start = (110 + name_size).div_ceil(4) * 4;
            let data = bytes[data_start..data_start + size].to_vec();
            let next = (data_start + size).div_ceil(4) * 4;
            bytes = &bytes[next..];
            let done = name == TRAILER;
            entries.push((name, mode, nlink, major, minor, data));
            if done {
                assert!(bytes.is_empty());
                return entries;
            }
        }
    }

    /// `(name, mode, nlink, rdev major, rdev minor, data)`
    type Row<'a> = (&'a str, u32, u32, u32, u32, &'a [u8]);

    #[test]
    fn entries_round_trip_with_padding_and_trailer() {
        let mut cpio = CpioWriter::new(Vec::new());
        cpio.dir("bin", 0o755).unwrap();
        cpio.file("bin/a", 0o755, b"x").unwrap();
        cpio.file("init", 0o755, b"four").unwrap();
        cpio.file("etc.txt", 0o644, b"").unwrap();
        cpio.symlink("sbin", "bin").unwrap();
        cpio.char_device("dev/console", 0o600, 5, 1).unwrap();
        let bytes = cpio.finish().unwrap();
        assert_eq!(bytes.len() % 4, 0);
        let entries = parse(&bytes);
        let expected: Vec<Row> = vec![
            ("bin", 0o040755, 2, 0, 0, b""),
            ("bin/a", 0o100755, 1, 0, 0, b"x"),
            ("init", 0o100755, 1, 0, 0, b"four"),
            ("etc.txt", 0o100644, 1, 0, 0, b""),
            ("sbin", 0o120777, 1, 0, 0, b"bin"),
            ("dev/console", 0o020600, 1, 5, 1, b""),
            (TRAILER, 0, 1, 0, 0, b""),
        ];
        let got: Vec<Row> = entries
            .iter()
            .map(|(n, m, l, a, b, d)| (n.as_str(), *m, *l, *a, *b, d.as_slice()))
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn header_is_byte_exact() {
        let mut cpio = CpioWriter::new(Vec::new());
        cpio.file("ab", 0o644, b"hello").unwrap();
        let bytes = cpio.finish().unwrap();
        let expected_header = concat!(
            "070701", "00000001", "000081a4", "00000000", "00000000", "00000001", "00000000",
            "00000005", "00000000", "00000000", "00000000", "00000000", "00000003", "00000000"
        );
        assert_eq!(&bytes[..110], expected_header.as_bytes());
        // 110 + "ab\0" = 113, padded to 116; then 5 data bytes padded to 8.
        assert_eq!(&bytes[110..116], b"ab\0\0\0\0");
        assert_eq!(&bytes[116..124], b"hello\0\0\0");
        assert_eq!(&bytes[124..130], b"070701");
    }

    #[test]
    fn inode_numbers_increase() {
        let mut cpio = CpioWriter::new(Vec::new());
        cpio.file("a", 0o644, b"").unwrap();
        cpio.file("b", 0o644, b"").unwrap();
        let bytes = cpio.finish().unwrap();
        let second = bytes
            .windows(6)
            .enumerate()
            .filter(|(_, w)| *w == MAGIC.as_bytes())
            .nth(1)
            .unwrap()
            .0;
        assert_eq!(&bytes[6..14], b"00000001");
        assert_eq!(&bytes[second + 6..second + 14], b"00000002");
    }

    #[test]
    fn the_system_cpio_reads_it() {
        // Cross-check against GNU cpio (install-deps installs it).
        banger_requires::require!(Tool("cpio"));
        let mut cpio = CpioWriter::new(Vec::new());
        cpio.dir("d", 0o755).unwrap();
        cpio.file("d/f", 0o644, b"data\n").unwrap();
        cpio.symlink("l", "d/f").unwrap();
        let bytes = cpio.finish().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("a.cpio");
        fs_err::write(&archive, &bytes).unwrap();
        let listed = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(banger_exec::run(
                &banger_exec::Cmd::new("sh")
                    .args(["-c", "cpio -it < a.cpio"])
                    .cwd(dir.path()),
            ))
            .unwrap();
        let out = listed.stdout_text();
        assert_eq!(out.lines().collect::<Vec<_>>(), ["d", "d/f", "l"]);
    }
}
