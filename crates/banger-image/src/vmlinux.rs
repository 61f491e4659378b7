//! Extracting the uncompressed ELF `vmlinux` from a bzImage (what the kernel's own
//! `scripts/extract-vmlinux` does): find a compression magic inside the image, decompress
//! from there, keep the first result that starts with the ELF magic. Firecracker on
//! x86_64 boots only this ELF, and QEMU boots it through its PVH entry, skipping the
//! guest's own (slow under TCG) decompression.
//!
//! LZ4 (Debian's cloud kernel) and gzip are decoded in process; xz and zstd candidates are
//! handed back for the caller to run through the `xz`/`zstd` tools.

use std::io::Read;

/// The ELF magic every valid result starts with.
pub const ELF_MAGIC: [u8; 4] = [0x7f, b'E', b'L', b'F'];

/// Magic of the LZ4 "legacy" frame the kernel's build uses (`lz4 -l`).
const LZ4_LEGACY_MAGIC: [u8; 4] = [0x02, 0x21, 0x4c, 0x18];
/// Every LZ4 legacy block but the last decompresses to exactly this many bytes.
const LZ4_LEGACY_BLOCK: usize = 8 << 20;
const GZIP_MAGIC: [u8; 3] = [0x1f, 0x8b, 0x08];
const XZ_MAGIC: [u8; 6] = [0xfd, b'7', b'z', b'X', b'Z', 0x00];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// A compression format a bzImage payload may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Lz4Legacy,
    Gzip,
    Xz,
    Zstd,
}

impl Compression {
    fn magic(self) -> &'static [u8] {
        match self {
            Compression::Lz4Legacy => &LZ4_LEGACY_MAGIC,
            Compression::Gzip => &GZIP_MAGIC,
            Compression::Xz => &XZ_MAGIC,
            Compression::Zstd => &ZSTD_MAGIC,
        }
    }
}

/// Why no vmlinux came out.
#[derive(Debug, thiserror::Error)]
pub enum VmlinuxError {
    #[error("no compressed payload that decompresses to an ELF file")]
    NoPayload,
}

/// Every `(offset, format)` where a known magic occurs, in the order to try them: LZ4
/// first (Debian's cloud kernels), then xz, zstd, gzip; by offset within a format. Lazy,
/// so a kernel whose first LZ4 candidate decodes is scanned only once.
pub fn payload_candidates(image: &[u8]) -> impl Iterator<Item = (usize, Compression)> + '_ {
    [
        Compression::Lz4Legacy,
        Compression::Xz,
        Compression::Zstd,
        Compression::Gzip,
    ]
    .into_iter()
    .flat_map(move |format| {
        let magic = format.magic();
        image
            .windows(magic.len())
            .enumerate()
            .filter(move |(_, window)| *window == magic)
            .map(move |(offset, _)| (offset, format))
    })
}

/// True when `bytes` starts with the ELF magic.
pub fn is_elf(bytes: &[u8]) -> bool {
    bytes.starts_with(&ELF_MAGIC)
}

/// Decodes an LZ4 legacy stream (magic, then blocks of a 4-byte little-endian compressed
/// size and an LZ4 block of at most 8 MiB output) that may be followed by unrelated
/// bytes (in a bzImage: the appended uncompressed size, padding). Decoding stops after a
/// short block, at a size that does not fit the remaining input, or at a block that does
/// not decode once some output exists; `None` when not even the first block decodes.
pub fn decompress_lz4_legacy(data: &[u8]) -> Option<Vec<u8>> {
    let mut rest = data.strip_prefix(&LZ4_LEGACY_MAGIC[..])?;
    let mut out: Vec<u8> = Vec::new();
    let mut block = vec![0u8; LZ4_LEGACY_BLOCK];
    while rest.len() >= 4 {
        let size = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        // A second legacy frame may follow directly (concatenated `lz4 -l` output).
        if rest[..4] == LZ4_LEGACY_MAGIC {
            rest = &rest[4..];
            continue;
        }
        if size == 0 || size > rest.len() - 4 {
            break;
        }
        match lz4_flex::block::decompress_into(&rest[4..4 + size], &mut block) {
            Ok(written) => {
                out.extend_from_slice(&block[..written]);
                rest = &rest[4 + size..];
                if written < LZ4_LEGACY_BLOCK {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Decodes one gzip member starting at `data` (trailing bytes are ignored).
pub fn decompress_gzip(data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    // A truncated or corrupt stream still yields what decoded before the error; the ELF
    // check decides whether that is good enough, as the shell tools' output would be.
    let _ = flate2::read::GzDecoder::new(data).read_to_end(&mut out);
    (!out.is_empty()).then_some(out)
}

/// What the in-process search found.
#[derive(Debug, PartialEq, Eq)]
pub enum Extracted {
    /// The vmlinux.
    Elf(Vec<u8>),
    /// Nothing decoded in process; these xz/zstd candidates are left for a host tool
    /// (the caller decompresses each and keeps the first ELF result, see [`is_elf`]).
    NeedsTool(Vec<(usize, Compression)>),
}

/// Searches `image` (a bzImage) for the vmlinux, decoding LZ4 and gzip payloads here.
pub fn extract_in_process(image: &[u8]) -> Extracted {
    // Checking the ELF magic first allows `image` to be a vmlinux already.
    if is_elf(image) {
        return Extracted::Elf(image.to_vec());
    }
    let mut for_tool = Vec::new();
    for (offset, format) in payload_candidates(image) {
        let data = &image[offset..];
        let decoded = match format {
            Compression::Lz4Legacy => decompress_lz4_legacy(data),
            Compression::Gzip => decompress_gzip(data),
            Compression::Xz | Compression::Zstd => {
                for_tool.push((offset, format));
                None
            }
        };
        if let Some(decoded) = decoded.filter(|bytes| is_elf(bytes)) {
            return Extracted::Elf(decoded);
        }
    }
    Extracted::NeedsTool(for_tool)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A fake ELF body: the magic, then bytes that compress but are not all equal.
    fn elf_body(len: usize) -> Vec<u8> {
        let mut body: Vec<u8> = (0..len)
            .map(|i| (i % 251) as u8 ^ (i / 4096) as u8)
            .collect();
        body[..4].copy_from_slice(&ELF_MAGIC);
        body
    }

    fn lz4_legacy(data: &[u8]) -> Vec<u8> {
        let mut out = LZ4_LEGACY_MAGIC.to_vec();
        for chunk in data.chunks(LZ4_LEGACY_BLOCK) {
            let block = lz4_flex::block::compress(chunk);
            out.extend_from_slice(&(block.len() as u32).to_le_bytes());
            out.extend_from_slice(&block);
        }
        out
    }

    #[test]
    fn lz4_legacy_round_trips_multiple_blocks_with_trailing_bytes() {
        let cases = [
            1000,
            LZ4_LEGACY_BLOCK,
            LZ4_LEGACY_BLOCK + 12345,
            2 * LZ4_LEGACY_BLOCK + 1,
        ];
        for len in cases {
            let body = elf_body(len);
            let mut stream = lz4_legacy(&body);
            // What follows the payload in a bzImage: the uncompressed size, then padding.
            stream.extend_from_slice(&(len as u32).to_le_bytes());
            stream.extend_from_slice(&[0u8; 64]);
            assert_eq!(
                decompress_lz4_legacy(&stream).as_deref(),
                Some(&body[..]),
                "len {len}"
            );
        }
    }

    #[test]
    fn lz4_legacy_rejects_other_data() {
        assert_eq!(decompress_lz4_legacy(b"not lz4"), None);
        assert_eq!(decompress_lz4_legacy(&LZ4_LEGACY_MAGIC), None);
        let mut garbage = LZ4_LEGACY_MAGIC.to_vec();
        garbage.extend_from_slice(&8u32.to_le_bytes());
        garbage.extend_from_slice(&[0xff; 8]);
        assert_eq!(decompress_lz4_legacy(&garbage), None);
    }

    #[test]
    fn elf_validation() {
        let cases: &[(&[u8], bool)] = &[
            (b"\x7fELF\x02\x01", true),
            (b"\x7fELF", true),
            (b"\x7fEL", false),
            (b"MZ\x90\x00", false),
            (b"", false),
        ];
        for (bytes, expected) in cases {
            assert_eq!(is_elf(bytes), *expected, "{bytes:?}");
        }
    }

    #[test]
    fn extract_skips_a_false_magic_and_finds_the_real_payload() {
        let body = elf_body(3 << 20);
        let mut image = b"MZ fake bzImage setup header ".to_vec();
        // A stray legacy magic followed by junk, as can occur in setup code.
        image.extend_from_slice(&LZ4_LEGACY_MAGIC);
        image.extend_from_slice(&[0x10, 0, 0, 0]);
        image.extend_from_slice(&[0xAA; 16]);
        image.extend_from_slice(&lz4_legacy(&body));
        image.extend_from_slice(&[0u8; 100]);
        assert_eq!(extract_in_process(&image), Extracted::Elf(body));
    }

    #[test]
    fn extract_gzip_payload_and_non_elf_result() {
        let body = elf_body(100_000);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&body).unwrap();
        let mut image = b"setup".to_vec();
        image.extend_from_slice(&gz.finish().unwrap());
        image.extend_from_slice(b"trailing");
        assert_eq!(extract_in_process(&image), Extracted::Elf(body));

        // A payload that decompresses fine but is not ELF is not accepted.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"just text, no ELF").unwrap();
        let image = gz.finish().unwrap();
        assert_eq!(extract_in_process(&image), Extracted::NeedsTool(vec![]));
    }

    #[test]
    fn xz_and_zstd_are_left_for_the_tool() {
        let mut image = b"head".to_vec();
        image.extend_from_slice(&XZ_MAGIC);
        image.extend_from_slice(b"payload");
        image.extend_from_slice(&ZSTD_MAGIC);
        assert_eq!(
            extract_in_process(&image),
            Extracted::NeedsTool(vec![(4, Compression::Xz), (17, Compression::Zstd)])
        );
        // An image that is already ELF is returned as it is.
        assert_eq!(
            extract_in_process(b"\x7fELF..."),
            Extracted::Elf(b"\x7fELF...".to_vec())
        );
    }

    #[test]
    fn candidates_are_ordered_by_preference() {
        let mut image = Vec::new();
        image.extend_from_slice(&GZIP_MAGIC);
        image.extend_from_slice(&LZ4_LEGACY_MAGIC);
        image.extend_from_slice(&ZSTD_MAGIC);
        image.extend_from_slice(&LZ4_LEGACY_MAGIC);
        assert_eq!(
            payload_candidates(&image).collect::<Vec<_>>(),
            vec![
                (3, Compression::Lz4Legacy),
                (11, Compression::Lz4Legacy),
                (7, Compression::Zstd),
                (0, Compression::Gzip),
            ]
        );
    }
}
