//! Whether `<name>.vm` resolves on this host. bangerd answers `.vm` names on the bridge
//! address; banger-helper routes the domain there through systemd-resolved. Without
//! systemd-resolved the user has to point `.vm` at the responder themselves, and this
//! check says how.

use std::net::SocketAddrV4;
use std::path::Path;

use crate::Check;

/// Where systemd-resolved keeps its runtime state while it runs.
pub const RESOLVED_RUN_DIR: &str = "/run/systemd/resolve";

/// `resolved_run_dir` is [`RESOLVED_RUN_DIR`] (tests pass another); `responder` is the
/// daemon's DNS responder (bridge gateway, port 42069 unless configured otherwise).
pub fn check_vm_dns(resolved_run_dir: &Path, responder: SocketAddrV4) -> Check {
    let (ip, port) = (responder.ip(), responder.port());
    if resolved_run_dir.is_dir() {
        return Check::pass(
            "vm dns",
            format!("systemd-resolved runs; banger-helper routes *.vm to {ip}:{port}"),
        );
    }
    Check::warn(
        "vm dns",
        "systemd-resolved is not running, so `<name>.vm` does not resolve on this host",
        format!(
            "point the `vm` domain at {ip} port {port} in your resolver (dnsmasq: \
             server=/vm/{ip}#{port}), or query it directly: dig -p {port} @{ip} NAME.vm; \
             `banger vm ssh NAME`, and `ssh NAME.vm` after `banger ssh-config --install`, work either way"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Status;

    #[test]
    fn resolved_running_passes_otherwise_the_manual_step_is_shown() {
        let responder: SocketAddrV4 = "172.30.0.1:42069".parse().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (dir.path().to_path_buf(), Status::Pass),
            (dir.path().join("absent"), Status::Warn),
        ];
        for (path, expected) in cases {
            let check = check_vm_dns(&path, responder);
            assert_eq!(check.status, expected, "{check:?}");
            if expected == Status::Warn {
                let hint = check.hint.unwrap_or_default();
                assert!(hint.contains("server=/vm/172.30.0.1#42069"), "{hint}");
            }
        }
    }
}
