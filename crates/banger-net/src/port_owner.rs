//! Who holds a host port, for the "port in use" error of `vm port publish`: the socket's
//! inode from `/proc/net/{tcp,udp}{,6}`, then the process with that socket open among
//! those `/proc` lets the daemon see (its own user's). `None` when it cannot be known
//! (another user's process, a socket in another network namespace).

use banger_model::PortProto;

/// `pid 1234 (python3)`, or `a socket of uid 0` when only the table says who.
pub fn owner_of(proto: PortProto, port: u16) -> Option<String> {
    let files: &[&str] = match proto {
        PortProto::Tcp => &["/proc/net/tcp", "/proc/net/tcp6"],
        PortProto::Udp => &["/proc/net/udp", "/proc/net/udp6"],
    };
    let (inode, uid) = files.iter().find_map(|file| {
        let table = std::fs::read_to_string(file).ok()?;
        socket_of(&table, proto, port)
    })?;
    Some(process_with_socket(inode).unwrap_or_else(|| format!("a socket of uid {uid}")))
}

/// The inode and uid of the socket bound to `port` in one `/proc/net` table: TCP
/// sockets listening (state `0A`), UDP sockets unconnected (state `07`).
pub(crate) fn socket_of(table: &str, proto: PortProto, port: u16) -> Option<(u64, u32)> {
    let state = match proto {
        PortProto::Tcp => "0A",
        PortProto::Udp => "07",
    };
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let local = fields.get(1)?;
        let (_, hex_port) = local.rsplit_once(':')?;
        if u16::from_str_radix(hex_port, 16).ok()? != port || *fields.get(3)? != state {
            return None;
        }
        let uid = fields.get(7)?.parse().ok()?;
        let inode = fields.get(9)?.parse().ok()?;
        Some((inode, uid))
    })
}

fn process_with_socket(inode: u64) -> Option<String> {
    let target = format!("socket:[{inode}]");
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|link| link.as_os_str() == target.as_str())
        });
        if holds {
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            return Some(format!("pid {pid} ({})", comm.trim()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 424242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F91 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 7 1 0000000000000000 20 4 30 10 -1
";

    #[test]
    fn the_listening_socket_is_found_by_port() {
        assert_eq!(socket_of(TCP, PortProto::Tcp, 8080), Some((424242, 1000)));
        // 0x1F91 is an established connection, not a listener.
        assert_eq!(socket_of(TCP, PortProto::Tcp, 8081), None);
        assert_eq!(socket_of(TCP, PortProto::Udp, 8080), None);
        assert_eq!(socket_of("", PortProto::Tcp, 8080), None);
    }

    #[test]
    fn the_owner_of_our_own_listener_is_this_process() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let owner = owner_of(PortProto::Tcp, port).expect("an owner");
        assert!(
            owner.starts_with(&format!("pid {} (", std::process::id())),
            "{owner}"
        );
    }
}
