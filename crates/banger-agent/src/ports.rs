//! ports: which sockets accept traffic in the guest. Parses `/proc/net/{tcp,tcp6,udp,
//! udp6}` (TCP sockets in LISTEN, UDP sockets bound to a port) and, best effort, names
//! the owning process by finding the socket's inode among `/proc/<pid>/fd` links.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use banger_proto::agent::{ListeningPort, Transport};

/// `st` of a TCP socket in LISTEN.
const TCP_LISTEN: &str = "0A";
/// `st` of an unconnected UDP socket (TCP_CLOSE in the kernel's shared numbering).
const UDP_UNCONNECTED: &str = "07";

/// One socket line of a `/proc/net` table that accepts traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketEntry {
    pub proto: Transport,
    pub bind: IpAddr,
    pub port: u16,
    pub inode: u64,
}

/// The listening sockets under `proc_root` (normally `/proc`), sorted, one per
/// (protocol, address, port). A table that cannot be read (no IPv6) is skipped.
pub fn listening_ports(proc_root: &Path) -> Vec<ListeningPort> {
    let tables = [
        ("net/tcp", Transport::Tcp),
        ("net/tcp6", Transport::Tcp),
        ("net/udp", Transport::Udp),
        ("net/udp6", Transport::Udp),
    ];
    let mut entries = Vec::new();
    for (table, proto) in tables {
        if let Ok(text) = fs::read_to_string(proc_root.join(table)) {
            entries.extend(parse_table(&text, proto));
        }
    }
    let wanted: HashSet<u64> = entries.iter().map(|entry| entry.inode).collect();
    let owners = socket_owners(proc_root, &wanted);
    let mut ports: Vec<ListeningPort> = entries
        .into_iter()
        .map(|entry| {
            let owner = owners.get(&entry.inode);
            ListeningPort {
                proto: entry.proto,
                bind: entry.bind,
                port: entry.port,
                process: owner.map(|(_, name)| name.clone()),
                pid: owner.map(|(pid, _)| *pid),
            }
        })
        .collect();
    // SO_REUSEPORT groups show one line per socket; the host wants each port once, with
    // an owner if any of the sockets has one (sorted first, so dedup keeps it).
    ports.sort_by(|a, b| {
        (a.proto, a.bind, a.port, a.process.is_none(), &a.process).cmp(&(
            b.proto,
            b.bind,
            b.port,
            b.process.is_none(),
            &b.process,
        ))
    });
    ports.dedup_by(|later, earlier| {
        (later.proto, later.bind, later.port) == (earlier.proto, earlier.bind, earlier.port)
    });
    ports
}

/// The accepting sockets of one `/proc/net/{tcp,udp}[6]` table. Lines that do not parse
/// are skipped (the header, or a future kernel's format).
pub fn parse_table(text: &str, proto: Transport) -> Vec<SocketEntry> {
    let wanted_state = match proto {
        Transport::Tcp => TCP_LISTEN,
        Transport::Udp => UDP_UNCONNECTED,
    };
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 10 || !fields[0].ends_with(':') || fields[3] != wanted_state {
                return None;
            }
            let (bind, port) = parse_endpoint(fields[1])?;
            let inode = fields[9].parse().ok()?;
            // An unbound UDP socket shows port 0; it receives nothing.
            (port != 0).then_some(SocketEntry {
                proto,
                bind,
                port,
                inode,
            })
        })
        .collect()
}

/// `0100007F:1F90` or a 32-digit IPv6 form. The kernel prints each 32-bit word of the
/// address as a native-endian hex number, so the word's bytes in this machine's order
/// are the address bytes; the port is plain hex.
fn parse_endpoint(text: &str) -> Option<(IpAddr, u16)> {
    let (address, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut bytes = Vec::with_capacity(16);
    if address.len() % 8 != 0 {
        return None;
    }
    for word in address.as_bytes().chunks(8) {
        let word = std::str::from_utf8(word).ok()?;
        bytes.extend(u32::from_str_radix(word, 16).ok()?.to_ne_bytes());
    }
    let address = match bytes.len() {
        4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => return None,
    };
    Some((address, port))
}

/// For each wanted socket inode, the pid and command name of a process holding it.
/// Processes that vanish or cannot be read are skipped.
fn socket_owners(proc_root: &Path, wanted: &HashSet<u64>) -> HashMap<u64, (u32, String)> {
    let mut owners = HashMap::new();
    if wanted.is_empty() {
        return owners;
    }
    let Ok(processes) = fs::read_dir(proc_root) else {
        return owners;
    };
    for process in processes.flatten() {
        let Some(pid) = process
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(descriptors) = fs::read_dir(process.path().join("fd")) else {
            continue;
        };
        let mut name = None;
        for descriptor in descriptors.flatten() {
            let Some(inode) = fs::read_link(descriptor.path())
                .ok()
                .and_then(|target| socket_inode(target.to_str()?))
            else {
                continue;
            };
            if wanted.contains(&inode) && !owners.contains_key(&inode) {
                let name = name.get_or_insert_with(|| {
                    fs::read_to_string(process.path().join("comm"))
                        .map(|comm| comm.trim_end().to_owned())
                        .unwrap_or_default()
                });
                owners.insert(inode, (pid, name.clone()));
            }
        }
        if owners.len() == wanted.len() {
            break;
        }
    }
    owners
}

/// The inode of an fd link target `socket:[12345]`.
fn socket_inode(target: &str) -> Option<u64> {
    target
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0CEA 00000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 24071 1 0000000000000000 100 0 0 10 0
   1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 18339 1 0000000000000000 100 0 0 10 0
   2: 0F02000A:0016 0202000A:C6F2 01 00000000:00000000 02:0000A3D2 00000000     0        0 30121 4 0000000000000000 20 4 31 10 -1
   3: 0F02000A:9A1C 5DB8D822:01BB 06 00000000:00000000 03:00001733 00000000     0        0 0 3 0000000000000000
";

    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 18341 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 55012 1 0000000000000000 100 0 0 10 0
   2: 0000000000000000FFFF00000100007F:1F91 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 55013 1 0000000000000000 100 0 0 10 0
";

    const UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  253: 3500007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000   101        0 17521 2 0000000000000000 0
  304: 00000000:0044 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 20120 2 0000000000000000 0
  512: 0F02000A:9C4A 08080808:0035 01 00000000:00000000 00:00000000 00000000     0        0 41111 2 0000000000000000 0
  600: 00000000:0000 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 41112 2 0000000000000000 0
";

    const UDP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  101: 000080FE00000000FF0050A2FE1C0BFE:0222 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 23001 2 0000000000000000 0
";

    fn entry(proto: Transport, bind: &str, port: u16, inode: u64) -> SocketEntry {
        SocketEntry {
            proto,
            bind: bind.parse().unwrap(),
            port,
            inode,
        }
    }

    /// These address encodings match this (little-endian) test machine, like the kernel
    /// output they were taken from.
    #[cfg(target_endian = "little")]
    #[test]
    fn parses_real_proc_net_tables() {
        let table = [
            (
                TCP,
                Transport::Tcp,
                vec![
                    entry(Transport::Tcp, "127.0.0.1", 3306, 24071),
                    entry(Transport::Tcp, "0.0.0.0", 22, 18339),
                ],
            ),
            (
                TCP6,
                Transport::Tcp,
                vec![
                    entry(Transport::Tcp, "::", 22, 18341),
                    entry(Transport::Tcp, "::1", 8080, 55012),
                    entry(Transport::Tcp, "::ffff:127.0.0.1", 8081, 55013),
                ],
            ),
            (
                UDP,
                Transport::Udp,
                vec![
                    entry(Transport::Udp, "127.0.0.53", 53, 17521),
                    entry(Transport::Udp, "0.0.0.0", 68, 20120),
                ],
            ),
            (
                UDP6,
                Transport::Udp,
                vec![entry(Transport::Udp, "fe80::a250:ff:fe0b:1cfe", 546, 23001)],
            ),
        ];
        for (text, proto, want) in table {
            assert_eq!(parse_table(text, proto), want, "{text}");
        }
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let table = [
            "",
            "   0: 0100007F 00000000:0000 0A 0 0 0 0 0 1",
            "   0: 0100007F:XYZ 00000000:0000 0A 0 0 0 0 0 1",
            "   0: 0100007:0016 00000000:0000 0A 0 0 0 0 0 1",
            "   0: 0100007F:0016 00000000:0000 0A 0 0 0 0 0 inode",
            "   0: 0100007F:0016 00000000:0000 0A",
            "   0 0100007F:0016 00000000:0000 0A 0 0 0 0 0 1",
        ];
        for line in table {
            assert_eq!(parse_table(line, Transport::Tcp), vec![], "{line:?}");
        }
    }

    #[test]
    fn socket_links_yield_their_inode() {
        let table = [
            ("socket:[18339]", Some(18339)),
            ("socket:[]", None),
            ("pipe:[18339]", None),
            ("/dev/null", None),
        ];
        for (target, want) in table {
            assert_eq!(socket_inode(target), want, "{target}");
        }
    }

    /// A fake /proc tree: tables plus one process holding one of the sockets.
    #[test]
    fn names_owners_and_merges_duplicate_sockets() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("net")).unwrap();
        let tcp = format!(
            "{TCP}   4: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 18340 1 0 100 0 0 10 0\n"
        );
        fs::write(root.path().join("net/tcp"), tcp).unwrap();
        fs::create_dir_all(root.path().join("412/fd")).unwrap();
        fs::write(root.path().join("412/comm"), "sshd\n").unwrap();
        std::os::unix::fs::symlink("socket:[18339]", root.path().join("412/fd/3")).unwrap();
        std::os::unix::fs::symlink("/dev/null", root.path().join("412/fd/0")).unwrap();
        fs::create_dir_all(root.path().join("self")).unwrap();

        let ports = listening_ports(root.path());
        assert_eq!(
            ports,
            vec![
                ListeningPort {
                    proto: Transport::Tcp,
                    bind: "0.0.0.0".parse().unwrap(),
                    port: 22,
                    process: Some("sshd".into()),
                    pid: Some(412),
                },
                ListeningPort {
                    proto: Transport::Tcp,
                    bind: "127.0.0.1".parse().unwrap(),
                    port: 3306,
                    process: None,
                    pid: None,
                },
            ]
        );
    }
}
