//! banger-fuzz: the bodies of the fuzz targets, one function per parser that reads input
//! banger does not trust. `fuzz/` (a cargo-fuzz layout outside the workspace) calls each
//! from its `fuzz_target!`, and `tests/corpus.rs` replays every file of
//! `fuzz/corpus/<target>/` through the same function in the fast profile, so CI runs the
//! corpora (seeds and every input a fuzzer ever crashed on) without a nightly toolchain.
//!
//! A body panics when the parser breaks one of its promises, not only when it panics
//! itself: what decodes re-encodes to the same thing, a DNS answer keeps the query's id
//! and fits 512 bytes, a tar stream writes nothing outside its directory, editing the
//! user's ssh config changes only banger's lines and undoes byte for byte, a manifest
//! that parses has checked digests and media types.

use std::net::Ipv4Addr;

mod oci_manifest;
mod ssh_config;

pub use oci_manifest::oci_manifest;
pub use ssh_config::ssh_config;

/// A target's body: panics when the parser breaks a promise.
pub type Body = fn(&[u8]);

/// Every target, by the name of its `fuzz/fuzz_targets/<name>.rs` and corpus directory.
pub const TARGETS: &[(&str, Body)] = &[
    ("rpc_frame", rpc_frame),
    ("agent_frame", agent_frame),
    ("helper_request", helper_request),
    ("dns_packet", dns_packet),
    ("git_patch", git_patch),
    ("tar_unpack", tar_unpack),
    ("ssh_config", ssh_config),
    ("oci_manifest", oci_manifest),
];

/// A CLI -> daemon line: the daemon's request decoder and the input-frame test.
pub fn rpc_frame(data: &[u8]) {
    if let Some(Ok(input)) = banger_api::InputFrame::parse(data) {
        let line = serde_json::to_vec(&input).expect("an input frame encodes");
        let again = banger_api::InputFrame::parse(&line)
            .expect("an encoded input frame has its key")
            .expect("an encoded input frame decodes");
        assert_eq!(again, input);
    }
    match banger_api::parse_request(data) {
        Ok(frame) => {
            assert_eq!(frame.v, banger_api::PROTOCOL_VERSION);
            let line = serde_json::to_vec(&frame).expect("a request encodes");
            let again = banger_api::parse_request(&line).expect("an encoded request decodes");
            assert_eq!((again.id, &again.method), (frame.id, &frame.method));
        }
        Err(rejected) => {
            // The error is what goes back on the wire: it must encode.
            serde_json::to_vec(&rejected.error).expect("a rejection encodes");
        }
    }
}

/// A line either side of the agent channel reads: requests (the agent) and replies (the
/// daemon), with the splitter that cuts the stream into lines.
pub fn agent_frame(data: &[u8]) {
    use banger_proto::agent::{
        LineEvent, LineSplitter, decode_reply, decode_request, encode_frame,
    };
    let mut splitter = LineSplitter::new(4096);
    // Feed in two pieces so a line split across reads is exercised.
    let (first, second) = data.split_at(data.len() / 2);
    let mut lines = Vec::new();
    for piece in [first, second] {
        splitter.push(piece);
        while let Some(event) = splitter.next_event() {
            if let LineEvent::Line(line) = event {
                assert!(line.len() <= 4096, "a line over the limit came out");
                assert!(!line.contains(&b'\n'), "a line holds a newline");
                lines.push(line);
            }
        }
    }
    assert!(splitter.pending_bytes() <= data.len());
    lines.push(data.to_vec());
    for line in &lines {
        if let Ok(request) = decode_request(line) {
            let encoded = encode_frame(&request).expect("a decoded request encodes");
            let again = decode_request(&encoded[..encoded.len() - 1]).expect("and decodes");
            assert_eq!(again, request);
        }
        if let Ok(reply) = decode_reply(line) {
            let encoded = encode_frame(&reply).expect("a decoded reply encodes");
            let again = decode_reply(&encoded[..encoded.len() - 1]).expect("and decodes");
            assert_eq!(again, reply);
        }
    }
}

/// A daemon -> root helper line, and the subnet and name rules the helper applies.
pub fn helper_request(data: &[u8]) {
    use banger_proto::helper::{
        HelperRequest, Ipv4Subnet, check_bridge_name, check_tap_name, decode_helper_reply,
        decode_helper_request, encode_helper_line,
    };
    if let Ok(request) = decode_helper_request(data) {
        let line = encode_helper_line(&request).expect("a decoded request encodes");
        let again = decode_helper_request(line.strip_suffix(b"\n").unwrap_or(&line))
            .expect("an encoded request decodes");
        assert_eq!(again, request);
        let name = match &request {
            HelperRequest::CreateTap { name }
            | HelperRequest::OpenTap { name }
            | HelperRequest::DeleteTap { name } => Some(name.as_str()),
            HelperRequest::SetPolicy { tap, .. } => Some(tap.as_str()),
            _ => None,
        };
        if let Some(name) = name
            && check_tap_name(name).is_ok()
        {
            assert!(
                name.starts_with(banger_proto::helper::TAP_PREFIX),
                "{name:?}"
            );
            assert!(
                name.len() <= banger_proto::helper::IFNAME_MAX_BYTES,
                "{name:?}"
            );
            assert!(!name.contains('/') && !name.contains(".."), "{name:?}");
        }
    }
    let _ = decode_helper_reply(data);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(subnet) = text.parse::<Ipv4Subnet>() {
            for ip in [subnet.gateway(), subnet.first_guest(), subnet.last_guest()] {
                assert!(subnet.contains(ip), "{subnet}: {ip}");
            }
            assert!(!subnet.is_guest_address(subnet.gateway()), "{subnet}");
            assert!(!subnet.is_guest_address(subnet.broadcast()), "{subnet}");
        }
        if check_bridge_name(text).is_ok() {
            assert!(text.len() <= banger_proto::helper::IFNAME_MAX_BYTES);
        }
    }
}

/// A UDP packet to the `.vm` resolver.
pub fn dns_packet(data: &[u8]) {
    let lookup = |name: &str| (name == "web").then_some(Ipv4Addr::new(172, 30, 0, 2));
    if let Some(response) = banger_dns::answer(data, &lookup) {
        assert!(response.len() <= banger_dns::wire::MAX_RESPONSE_LEN);
        assert!(response.len() >= 12, "a response has a header");
        assert_eq!(
            response[..2],
            data[..2],
            "the response keeps the query's id"
        );
        assert_ne!(response[2] & 0x80, 0, "the response has QR set");
    }
}

/// A patch out of a guest: parsed strictly, then checked.
pub fn git_patch(data: &[u8]) {
    if let Ok(changes) = banger_patch::parse(data) {
        for change in &changes {
            assert!(
                change.old_path.is_some() || change.new_path.is_some(),
                "{change:?}"
            );
        }
        if banger_patch::validate(&changes).is_ok() {
            for change in &changes {
                for name in &change.names {
                    assert!(!name.starts_with(b"/"), "{change:?}");
                    assert!(
                        !name.split(|&b| b == b'/').any(|part| part == b".."),
                        "{change:?}"
                    );
                }
            }
        }
    }
}

/// A tar stream from a guest (`vm cp`, a workspace export), unpacked into a scratch
/// directory: nothing may appear beside that directory.
pub fn tar_unpack(data: &[u8]) {
    let root = tempfile::tempdir().expect("a scratch directory");
    let dir = root.path().join("into");
    std::fs::create_dir(&dir).expect("the target directory");
    let _ = banger_tar::unpack(data, &dir, None);
    let _ = banger_tar::unpack(data, &dir, Some(std::ffi::OsStr::new("renamed")));
    let beside: Vec<_> = std::fs::read_dir(root.path())
        .expect("the scratch directory reads")
        .map(|entry| entry.expect("an entry").file_name())
        .collect();
    assert_eq!(
        beside,
        [std::ffi::OsString::from("into")],
        "written outside"
    );
    // Directories the stream made read-only must not stop the clean-up.
    make_writable(&dir);
}

fn make_writable(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            make_writable(&entry.path());
        }
    }
}
