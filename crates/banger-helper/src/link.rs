//! link: the bridge and tap operations, done with `ip` (iproute2) because it is the
//! reference tool for netlink, plus the one ioctl `ip` cannot do for us (attaching a
//! descriptor to an existing tap, in banger-sys). Each operation first reads the current
//! links (`ip -j -d link show`, parsed by a pure function) and only adds what is missing,
//! so repeating one is harmless; an existing interface of the wrong kind is never
//! reused or deleted.

use std::os::fd::OwnedFd;

use banger_proto::helper::{HelperError, Ipv4Subnet};
use serde::Deserialize;

use crate::tool::{Tool, ToolError, ToolRunner};

/// What banger needs to know about one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    /// `bridge`, `tun`, `veth`, ... (`None` for physical devices and loopback).
    pub kind: Option<String>,
    /// For `tun` links: `tap` or `tun`.
    pub tun_type: Option<String>,
    /// The bridge (or bond) this link is enslaved to.
    pub master: Option<String>,
    /// Administratively up.
    pub up: bool,
}

impl Link {
    pub fn is_bridge(&self) -> bool {
        self.kind.as_deref() == Some("bridge")
    }

    pub fn is_tap(&self) -> bool {
        self.kind.as_deref() == Some("tun") && self.tun_type.as_deref() == Some("tap")
    }
}

#[derive(Deserialize)]
struct RawLink {
    ifname: String,
    #[serde(default)]
    flags: Vec<String>,
    #[serde(default)]
    master: Option<String>,
    #[serde(default)]
    linkinfo: Option<RawLinkInfo>,
}

#[derive(Deserialize)]
struct RawLinkInfo {
    #[serde(default)]
    info_kind: Option<String>,
    #[serde(default)]
    info_data: Option<serde_json::Value>,
}

/// Parses `ip -j -d link show`.
pub fn parse_links(json: &[u8]) -> Result<Vec<Link>, String> {
    let raw: Vec<RawLink> =
        serde_json::from_slice(json).map_err(|e| format!("unreadable `ip -j link` output: {e}"))?;
    Ok(raw
        .into_iter()
        .map(|link| {
            let kind = link.linkinfo.as_ref().and_then(|i| i.info_kind.clone());
            let tun_type = link
                .linkinfo
                .as_ref()
                .and_then(|i| i.info_data.as_ref())
                .and_then(|d| d.get("type"))
                .and_then(|t| t.as_str())
                .map(str::to_owned);
            Link {
                up: link.flags.iter().any(|f| f == "UP"),
                name: link.ifname,
                kind,
                tun_type,
                master: link.master,
            }
        })
        .collect())
}

/// Turns a tool failure into the typed `failed` answer for `op`.
pub fn failed(op: &str, error: impl std::fmt::Display) -> HelperError {
    HelperError::Failed {
        op: op.to_owned(),
        message: error.to_string(),
    }
}

fn ip(tools: &dyn ToolRunner, op: &str, args: &[&str]) -> Result<Vec<u8>, HelperError> {
    tools
        .run(&Tool::new("ip").args(args))
        .map(|out| out.stdout)
        .map_err(|error: ToolError| failed(op, error))
}

/// Every interface in the helper's network namespace.
pub fn list_links(tools: &dyn ToolRunner, op: &str) -> Result<Vec<Link>, HelperError> {
    let json = ip(tools, op, &["-j", "-d", "link", "show"])?;
    parse_links(&json).map_err(|message| failed(op, message))
}

fn find<'a>(links: &'a [Link], name: &str) -> Option<&'a Link> {
    links.iter().find(|link| link.name == name)
}

/// Creates `bridge` if missing, gives it the pool's gateway address and brings it up.
pub fn ensure_bridge(
    tools: &dyn ToolRunner,
    bridge: &str,
    subnet: &Ipv4Subnet,
) -> Result<(), HelperError> {
    const OP: &str = "ensure_bridge";
    let links = list_links(tools, OP)?;
    match find(&links, bridge) {
        Some(link) if !link.is_bridge() => {
            return Err(failed(OP, format!("{bridge} exists and is not a bridge")));
        }
        Some(_) => {}
        None => {
            ip(
                tools,
                OP,
                &["link", "add", "name", bridge, "type", "bridge"],
            )?;
        }
    }
    // `replace` makes the address step idempotent.
    let gateway = subnet.gateway_cidr();
    ip(tools, OP, &["addr", "replace", &gateway, "dev", bridge])?;
    ip(tools, OP, &["link", "set", "dev", bridge, "up"])?;
    Ok(())
}

/// Removes `bridge` if it exists (and is a bridge).
pub fn delete_bridge(tools: &dyn ToolRunner, bridge: &str) -> Result<(), HelperError> {
    const OP: &str = "delete_bridge";
    let links = list_links(tools, OP)?;
    match find(&links, bridge) {
        None => Ok(()),
        Some(link) if !link.is_bridge() => Err(failed(
            OP,
            format!("{bridge} exists and is not a bridge; left alone"),
        )),
        Some(_) => ip(tools, OP, &["link", "del", "dev", bridge]).map(drop),
    }
}

/// Creates the persistent tap `name` owned by `owner_uid` (so an unprivileged VMM may
/// attach to it), enslaves it to `bridge` (created if missing) and brings it up.
pub fn create_tap(
    tools: &dyn ToolRunner,
    name: &str,
    owner_uid: u32,
    bridge: &str,
    subnet: &Ipv4Subnet,
) -> Result<(), HelperError> {
    const OP: &str = "create_tap";
    ensure_bridge(tools, bridge, subnet)?;
    let links = list_links(tools, OP)?;
    match find(&links, name) {
        Some(link) if !link.is_tap() => {
            return Err(failed(OP, format!("{name} exists and is not a tap")));
        }
        Some(link) if link.master.as_deref() == Some(bridge) && link.up => return Ok(()),
        Some(_) => {}
        None => {
            let uid = owner_uid.to_string();
            ip(
                tools,
                OP,
                &["tuntap", "add", "dev", name, "mode", "tap", "user", &uid],
            )?;
        }
    }
    ip(
        tools,
        OP,
        &["link", "set", "dev", name, "master", bridge, "up"],
    )?;
    Ok(())
}

/// Opens the existing tap `name` for a VMM: `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`, as QEMU
/// opens taps itself (it probes the header flag on a passed fd and uses it).
pub fn open_tap(tools: &dyn ToolRunner, name: &str) -> Result<OwnedFd, HelperError> {
    const OP: &str = "open_tap";
    let links = list_links(tools, OP)?;
    match find(&links, name) {
        // Without this check TUNSETIFF would create a fresh, unattached tap.
        None => Err(failed(OP, format!("no tap {name}; create it first"))),
        Some(link) if !link.is_tap() => Err(failed(OP, format!("{name} is not a tap"))),
        Some(_) => {
            use banger_sys::tap::{IFF_NO_PI, IFF_TAP, IFF_VNET_HDR};
            banger_sys::tap::open_tap(name, IFF_TAP | IFF_NO_PI | IFF_VNET_HDR)
                .map_err(|error| failed(OP, format!("cannot attach to {name}: {error}")))
        }
    }
}

/// Removes the tap `name` if it exists (and is a tap).
pub fn delete_tap(tools: &dyn ToolRunner, name: &str) -> Result<(), HelperError> {
    const OP: &str = "delete_tap";
    let links = list_links(tools, OP)?;
    match find(&links, name) {
        None => Ok(()),
        Some(link) if !link.is_tap() => Err(failed(
            OP,
            format!("{name} exists and is not a tap; left alone"),
        )),
        Some(_) => ip(tools, OP, &["link", "del", "dev", name]).map(drop),
    }
}

/// The interface of the default route (`ip -j route show default`), for NAT.
pub fn default_route_interface(tools: &dyn ToolRunner, op: &str) -> Result<String, HelperError> {
    let json = ip(tools, op, &["-j", "route", "show", "default"])?;
    parse_default_route(&json)
        .map_err(|message| failed(op, message))?
        .ok_or_else(|| {
            failed(
                op,
                "there is no default route; start the helper with --uplink",
            )
        })
}

/// The `dev` of the first default route in `ip -j route show default`.
pub fn parse_default_route(json: &[u8]) -> Result<Option<String>, String> {
    #[derive(Deserialize)]
    struct Route {
        #[serde(default)]
        dev: Option<String>,
    }
    let routes: Vec<Route> = serde_json::from_slice(json)
        .map_err(|e| format!("unreadable `ip -j route` output: {e}"))?;
    Ok(routes.into_iter().find_map(|route| route.dev))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeTools;

    const LINKS: &str = r#"[
      {"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"]},
      {"ifindex":2,"ifname":"eth0","flags":["BROADCAST","UP"]},
      {"ifindex":3,"ifname":"banger0","flags":["BROADCAST","UP"],"linkinfo":{"info_kind":"bridge","info_data":{"stp_state":0}}},
      {"ifindex":4,"ifname":"bgt-0123abcd","flags":["BROADCAST","UP"],"master":"banger0","linkinfo":{"info_kind":"tun","info_data":{"type":"tap","pi":false,"persist":true,"user":"me"}}},
      {"ifindex":5,"ifname":"bgt-down","flags":["BROADCAST"],"linkinfo":{"info_kind":"tun","info_data":{"type":"tap"}}},
      {"ifindex":6,"ifname":"bgt-veth","flags":["UP"],"linkinfo":{"info_kind":"veth"}}
    ]"#;

    fn pool() -> Ipv4Subnet {
        "172.30.0.0/24".parse().unwrap()
    }

    #[test]
    fn links_parse() {
        let links = parse_links(LINKS.as_bytes()).unwrap();
        let summary: Vec<(&str, bool, bool, Option<&str>, bool)> = links
            .iter()
            .map(|l| {
                (
                    l.name.as_str(),
                    l.is_bridge(),
                    l.is_tap(),
                    l.master.as_deref(),
                    l.up,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("lo", false, false, None, true),
                ("eth0", false, false, None, true),
                ("banger0", true, false, None, true),
                ("bgt-0123abcd", false, true, Some("banger0"), true),
                ("bgt-down", false, true, None, false),
                ("bgt-veth", false, false, None, true),
            ]
        );
        assert!(parse_links(b"not json").is_err());
    }

    #[test]
    fn default_routes_parse() {
        let cases: &[(&str, Option<&str>)] = &[
            (
                r#"[{"dst":"default","gateway":"192.0.2.1","dev":"eth0","flags":[]}]"#,
                Some("eth0"),
            ),
            ("[]", None),
            (r#"[{"dst":"default","type":"blackhole"}]"#, None),
        ];
        for (json, expected) in cases {
            assert_eq!(
                parse_default_route(json.as_bytes()).unwrap().as_deref(),
                *expected
            );
        }
    }

    #[test]
    fn ensure_bridge_creates_only_what_is_missing() {
        let tools = FakeTools::new().reply("ip -j -d link show", "[]");
        ensure_bridge(&tools, "banger0", &pool()).unwrap();
        assert_eq!(
            tools.commands(),
            [
                "ip -j -d link show",
                "ip link add name banger0 type bridge",
                "ip addr replace 172.30.0.1/24 dev banger0",
                "ip link set dev banger0 up",
            ]
        );

        let tools = FakeTools::new().reply("ip -j -d link show", LINKS);
        ensure_bridge(&tools, "banger0", &pool()).unwrap();
        assert!(!tools.commands().iter().any(|c| c.contains("link add")));

        let tools = FakeTools::new().reply("ip -j -d link show", LINKS);
        let error = ensure_bridge(&tools, "eth0", &pool()).unwrap_err();
        assert!(error.to_string().contains("not a bridge"), "{error}");
    }

    #[test]
    fn create_tap_is_idempotent_and_refuses_other_kinds() {
        let tools = FakeTools::new().reply("ip -j -d link show", LINKS);
        create_tap(&tools, "bgt-newone", 1000, "banger0", &pool()).unwrap();
        let commands = tools.commands();
        assert!(
            commands.contains(&"ip tuntap add dev bgt-newone mode tap user 1000".to_owned()),
            "{commands:?}"
        );
        assert_eq!(
            commands.last().unwrap(),
            "ip link set dev bgt-newone master banger0 up"
        );

        // Already a tap on the bridge and up: nothing after the checks.
        let tools = FakeTools::new().reply("ip -j -d link show", LINKS);
        create_tap(&tools, "bgt-0123abcd", 1000, "banger0", &pool()).unwrap();
        assert!(!tools.commands().iter().any(|c| c.contains("tuntap")));
        assert!(!tools.commands().iter().any(|c| c.contains("master")));

        // A tap that exists but is down and detached is fixed, not recreated.
        let tools = FakeTools::new().reply("ip -j -d link show", LINKS);
        create_tap(&tools, "bgt-down", 1000, "banger0", &pool()).unwrap();
        assert!(!tools.commands().iter().any(|c| c.contains("tuntap")));
        assert!(
            tools
                .commands()
                .contains(&"ip link set dev bgt-down master banger0 up".to_owned())
        );

        let tools = FakeTools::new().reply("ip -j -d link show", LINKS);
        let error = create_tap(&tools, "bgt-veth", 1000, "banger0", &pool()).unwrap_err();
        assert!(error.to_string().contains("not a tap"), "{error}");
    }

    #[test]
    fn deletes_touch_only_the_right_kind() {
        let tools = FakeTools::new().reply("ip -j -d link show", LINKS);
        delete_tap(&tools, "bgt-0123abcd").unwrap();
        assert_eq!(
            tools.commands().last().unwrap(),
            "ip link del dev bgt-0123abcd"
        );

        let tools = FakeTools::new().reply("ip -j -d link show", LINKS);
        delete_tap(&tools, "bgt-gone").unwrap();
        assert_eq!(tools.commands(), ["ip -j -d link show"]);

        let tools = FakeTools::new().reply("ip -j -d link show", LINKS);
        assert!(delete_tap(&tools, "bgt-veth").is_err());
        assert!(!tools.commands().iter().any(|c| c.contains("del")));

        let tools = FakeTools::new().reply("ip -j -d link show", LINKS);
        delete_bridge(&tools, "banger0").unwrap();
        assert_eq!(tools.commands().last().unwrap(), "ip link del dev banger0");

        let tools = FakeTools::new().reply("ip -j -d link show", "[]");
        delete_bridge(&tools, "banger0").unwrap();
        assert_eq!(tools.commands().len(), 1);
    }

    #[test]
    fn open_tap_requires_an_existing_tap() {
        let tools = FakeTools::new().reply("ip -j -d link show", LINKS);
        let error = open_tap(&tools, "bgt-absent").unwrap_err();
        assert!(error.to_string().contains("create it first"), "{error}");
        let error = open_tap(&tools, "bgt-veth").unwrap_err();
        assert!(error.to_string().contains("not a tap"), "{error}");
    }
}
