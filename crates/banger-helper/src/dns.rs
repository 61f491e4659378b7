//! dns: per-link DNS for `*.vm` through systemd-resolved. `resolvectl dns BRIDGE IP:PORT`
//! plus `resolvectl domain BRIDGE ~vm` sends only `vm` queries to banger's resolver,
//! leaving the host's other DNS alone. Without resolved the answer is a typed
//! `unsupported`, whose reason is the manual step the daemon shows the user.

use std::net::Ipv4Addr;

use banger_proto::helper::{DNS_ROUTING_DOMAIN, HelperError};

use crate::link::failed;
use crate::tool::{Tool, ToolError, ToolRunner};

/// resolvectl's complaints when systemd-resolved is installed but not running.
const NOT_RUNNING_MARKERS: &[&str] = &[
    "org.freedesktop.resolve1",
    "Could not activate remote peer",
    "Failed to connect to bus",
    "not been started",
];

/// Whether a resolvectl failure means "no systemd-resolved here" rather than a real error.
pub fn means_resolved_absent(error: &ToolError) -> bool {
    error.is_not_found()
        || error
            .stderr()
            .is_some_and(|stderr| NOT_RUNNING_MARKERS.iter().any(|m| stderr.contains(m)))
}

fn manual_step(server_ip: Ipv4Addr, port: u16) -> String {
    format!(
        "systemd-resolved is not running, so `*.vm` names are not configured; point the \
         `vm` domain at {server_ip} port {port} in your resolver (dnsmasq: \
         server=/vm/{server_ip}#{port}), or query it directly: dig -p {port} @{server_ip} NAME.vm"
    )
}

/// Routes `~vm` on `bridge` to `server_ip:port`.
pub fn setup_dns(
    tools: &dyn ToolRunner,
    bridge: &str,
    server_ip: Ipv4Addr,
    port: u16,
) -> Result<(), HelperError> {
    const OP: &str = "setup_dns";
    let server = format!("{server_ip}:{port}");
    let steps = [
        Tool::new("resolvectl").args(["dns", bridge, &server]),
        Tool::new("resolvectl").args(["domain", bridge, DNS_ROUTING_DOMAIN]),
    ];
    for tool in &steps {
        match tools.run(tool) {
            Ok(_) => {}
            Err(error) if means_resolved_absent(&error) => {
                return Err(HelperError::Unsupported {
                    op: OP.to_owned(),
                    reason: manual_step(server_ip, port),
                });
            }
            Err(error) => return Err(failed(OP, error)),
        }
    }
    Ok(())
}

/// Drops the per-link settings of `bridge`. Without resolved there is nothing to undo.
pub fn teardown_dns(tools: &dyn ToolRunner, bridge: &str) -> Result<(), HelperError> {
    match tools.run(&Tool::new("resolvectl").args(["revert", bridge])) {
        Ok(_) => Ok(()),
        Err(error) if means_resolved_absent(&error) => Ok(()),
        // The bridge is already gone, and its settings with it.
        Err(error)
            if error
                .stderr()
                .is_some_and(|s| s.contains("Failed to resolve interface")) =>
        {
            Ok(())
        }
        Err(error) => Err(failed("teardown_dns", error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeTools;

    fn gateway() -> Ipv4Addr {
        "172.30.0.1".parse().unwrap()
    }

    #[test]
    fn setup_runs_dns_then_domain() {
        let tools = FakeTools::new();
        setup_dns(&tools, "banger0", gateway(), 5353).unwrap();
        assert_eq!(
            tools.commands(),
            [
                "resolvectl dns banger0 172.30.0.1:5353",
                "resolvectl domain banger0 ~vm"
            ]
        );
    }

    #[test]
    fn without_resolved_the_answer_is_unsupported_with_the_manual_step() {
        let absent = [
            FakeTools::new().without("resolvectl"),
            FakeTools::new().fail(
                "resolvectl dns banger0 172.30.0.1:5353",
                "Failed to set DNS configuration: Unit dbus-org.freedesktop.resolve1.service not found.",
            ),
        ];
        for tools in absent {
            let error = setup_dns(&tools, "banger0", gateway(), 5353).unwrap_err();
            match error {
                HelperError::Unsupported { reason, .. } => {
                    assert!(reason.contains("server=/vm/172.30.0.1#5353"), "{reason}");
                }
                other => panic!("expected unsupported, got {other:?}"),
            }
            teardown_dns(&tools, "banger0").unwrap();
        }
    }

    #[test]
    fn other_failures_are_failures() {
        let tools = FakeTools::new().fail("resolvectl domain banger0 ~vm", "Invalid domain");
        let error = setup_dns(&tools, "banger0", gateway(), 53).unwrap_err();
        assert!(matches!(error, HelperError::Failed { .. }), "{error:?}");
        let tools = FakeTools::new().fail("resolvectl revert banger0", "Access denied");
        assert!(teardown_dns(&tools, "banger0").is_err());
    }
}
