//! Getting things out of a real tiny guest, and files both ways, on one shared VM:
//! `vm exec` forwards stdin (bytes exact, end of file closes the guest's stdin, a large
//! input streams with back-pressure); `vm cp` both ways keeps a tree's modes and
//! symlinks, renames like `docker cp`, and speaks tar on `-`.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use banger_e2e::{TestHost, exit_code, skip_unless_vm_capable, text};

const VM: &str = "wsout";

#[test]
fn exec_stdin_cp_and_workspace_export_on_a_real_guest() {
    if skip_unless_vm_capable("exec_stdin_cp_and_workspace_export_on_a_real_guest") {
        return;
    }
    let host = TestHost::start().unwrap();
    host.create_vm(VM, &["--image", "tiny"]);
    exec_forwards_stdin(&host);
    cp_both_ways(&host);
}

/// A tree with modes, an executable, a read-only directory, symlinks in and out of the
/// tree and awkward names.
fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("sub/deep")).unwrap();
    fs::write(root.join("run.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(root.join("sub/secret"), b"s3cret").unwrap();
    fs::set_permissions(root.join("sub/secret"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(root.join("sub/deep/with space 'q'"), vec![7u8; 100_000]).unwrap();
    symlink("/etc/passwd", root.join("link-out")).unwrap();
    symlink("sub/secret", root.join("link-in")).unwrap();
    fs::set_permissions(root.join("sub/deep"), fs::Permissions::from_mode(0o750)).unwrap();
}

/// Every entry under `root`: (relative name, mode, symlink target or content).
fn describe_tree(root: &Path) -> Vec<(String, u32, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let name = path.strip_prefix(root).unwrap().display().to_string();
            let mode = meta.permissions().mode() & 0o7777;
            let body = if meta.file_type().is_symlink() {
                fs::read_link(&path)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else if meta.is_dir() {
                stack.push(path.clone());
                Vec::new()
            } else {
                fs::read(&path).unwrap()
            };
            out.push((
                name,
                if meta.file_type().is_symlink() {
                    0
                } else {
                    mode
                },
                body,
            ));
        }
    }
    out.sort();
    out
}

fn cp_both_ways(host: &TestHost) {
    let started = std::time::Instant::now();
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    make_tree(&tree);
    let tree_arg = tree.to_str().unwrap();

    // Into an existing guest directory: lands as /root/tree.
    host.banger_ok(&["vm", "cp", tree_arg, &format!("{VM}:/root/")]);
    let listing = host.exec_ok(
        VM,
        &[
            "sh",
            "-c",
            "cd /root/tree && stat -c '%a %n' run.sh sub/secret sub/deep && readlink link-out && readlink link-in && cat sub/secret",
        ],
    );
    assert_eq!(
        listing, "755 run.sh\n600 sub/secret\n750 sub/deep\n/etc/passwd\nsub/secret\ns3cret",
        "modes, symlinks and content in the guest"
    );

    // Back to a new host path: the same tree, modes and links included.
    let back = work.path().join("back");
    host.banger_ok(&[
        "vm",
        "cp",
        &format!("{VM}:/root/tree"),
        back.to_str().unwrap(),
    ]);
    assert_eq!(
        describe_tree(&back),
        describe_tree(&tree),
        "round trip of the tree"
    );

    // A single file onto a new name, and back into an existing directory.
    let file = tree.join("run.sh");
    host.banger_ok(&[
        "vm",
        "cp",
        file.to_str().unwrap(),
        &format!("{VM}:/tmp/renamed.sh"),
    ]);
    assert_eq!(host.exec_ok(VM, &["/tmp/renamed.sh"]), "hi\n");
    let into = work.path().join("into");
    fs::create_dir(&into).unwrap();
    host.banger_ok(&[
        "vm",
        "cp",
        &format!("{VM}:/tmp/renamed.sh"),
        into.to_str().unwrap(),
    ]);
    let copied = into.join("renamed.sh");
    assert_eq!(
        fs::metadata(&copied).unwrap().permissions().mode() & 0o777,
        0o755
    );

    // `-`: a tar stream in and out.
    let mut stream = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(3);
    header.set_mode(0o640);
    stream
        .append_data(&mut header, "from-stdin.txt", &b"abc"[..])
        .unwrap();
    let stream = stream.into_inner().unwrap();
    let out = host.banger_with_input(&["vm", "cp", "-", &format!("{VM}:/tmp")], &stream);
    host.expect_success(&["vm", "cp", "-"], &out);
    assert_eq!(
        host.exec_ok(VM, &["stat", "-c", "%a %s", "/tmp/from-stdin.txt"]),
        "640 3\n"
    );
    let out = host.banger(&["vm", "cp", &format!("{VM}:/root/tree/sub"), "-"]);
    host.expect_success(&["vm", "cp", "VM:... -"], &out);
    let mut names: Vec<String> = tar::Archive::new(out.stdout.as_slice())
        .entries()
        .unwrap()
        .map(|entry| entry.unwrap().path().unwrap().display().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["sub", "sub/deep", "sub/deep/with space 'q'", "sub/secret"]
    );

    // A missing guest source and a missing parent are refused with the reason.
    let out = host.banger(&["vm", "cp", &format!("{VM}:/nope"), into.to_str().unwrap()]);
    assert_eq!(exit_code(&out), Some(1));
    assert!(
        text(&out.stderr).contains("no such file"),
        "{}",
        text(&out.stderr)
    );
    let out = host.banger(&["vm", "cp", tree_arg, &format!("{VM}:/no/such/dir")]);
    assert_eq!(exit_code(&out), Some(1));
    assert!(
        text(&out.stderr).contains("parent directory does not exist"),
        "{}",
        text(&out.stderr)
    );
    banger_e2e::report_timing("vm cp both ways (8 calls)", started.elapsed());
}

/// `vm exec VM -- sh -c 'cat > f' < file` writes the file's exact bytes; a command that
/// reads all of its stdin ends (so EOF reached it); `-n` gives it nothing.
fn exec_forwards_stdin(host: &TestHost) {
    let started = std::time::Instant::now();
    let mut input: Vec<u8> = (0..=255u8).collect();
    input.extend_from_slice(b"\nlast line without newline");
    let out = host.banger_with_input(
        &["vm", "exec", VM, "--", "sh", "-c", "cat > /tmp/stdin.bin"],
        &input,
    );
    host.expect_success(&["vm", "exec", "cat > f"], &out);
    let back = host.exec(VM, &["cat", "/tmp/stdin.bin"]);
    assert_eq!(back.stdout, input, "the guest file has stdin's exact bytes");

    // 3 MiB through `wc -c`: more than the flow-control windows, so back-pressure works.
    let big: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let out = host.banger_with_input(&["vm", "exec", VM, "--", "wc", "-c"], &big);
    host.expect_success(&["vm", "exec", "wc -c"], &out);
    assert_eq!(text(&out.stdout).trim(), big.len().to_string());

    // Output and exit code still pass through with stdin forwarded.
    let out = host.banger_with_input(
        &["vm", "exec", VM, "--", "sh", "-c", "tr a-z A-Z; exit 7"],
        b"shout\n",
    );
    assert_eq!(exit_code(&out), Some(7), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "SHOUT\n");

    // -n: the command reads /dev/null, whatever banger's stdin holds.
    let out = host.banger_with_input(&["vm", "exec", "-n", VM, "--", "wc", "-c"], b"ignored");
    host.expect_success(&["vm", "exec", "-n"], &out);
    assert_eq!(text(&out.stdout).trim(), "0");
    banger_e2e::report_timing("vm exec with stdin (4 calls, 3 MiB)", started.elapsed());
}
