//! Getting things out of a real tiny guest, and files both ways, on one shared VM:
//! `vm exec` forwards stdin (bytes exact, end of file closes the guest's stdin, a large
//! input streams with back-pressure).

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
