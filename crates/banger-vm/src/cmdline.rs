//! The guest kernel command line. Pure: what the guest needs to find its root disk, print
//! to the serial log, and (with networking) configure `eth0` from `ip=`, which banger's
//! initramfs applies itself because Debian kernels ignore it (`CONFIG_IP_PNP` is off).

/// Static IPv4 configuration for the guest's `eth0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestNet {
    pub address: String,
    pub gateway: String,
    pub netmask: String,
}

/// Builds the kernel command line for a guest named `hostname`.
///
/// `panic=-1` with QEMU's `-no-reboot` turns a guest kernel panic into a VMM exit, so a
/// broken boot ends promptly instead of hanging. `net.ifnames=0` keeps the NIC `eth0` under
/// udev. The TSC frequency for TCG is added by the QEMU driver, which knows the accelerator.
pub fn kernel_cmdline(hostname: &str, net: Option<&GuestNet>) -> String {
    let mut parts = vec![
        "console=ttyS0".to_string(),
        "root=/dev/vda".to_string(),
        "rw".to_string(),
        "panic=-1".to_string(),
        "net.ifnames=0".to_string(),
        "systemd.show_status=0".to_string(),
    ];
    match net {
        Some(net) => parts.push(format!(
            "ip={}::{}:{}:{}:eth0:off",
            net.address, net.gateway, net.netmask, hostname
        )),
        None => parts.push(format!("ip=:::::{hostname}:none:off")),
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_network_only_the_hostname_is_set() {
        assert_eq!(
            kernel_cmdline("web", None),
            "console=ttyS0 root=/dev/vda rw panic=-1 net.ifnames=0 systemd.show_status=0 ip=:::::web:none:off"
        );
    }

    #[test]
    fn with_network_ip_is_complete() {
        let net = GuestNet {
            address: "172.30.0.10".into(),
            gateway: "172.30.0.1".into(),
            netmask: "255.255.255.0".into(),
        };
        assert!(
            kernel_cmdline("web", Some(&net))
                .ends_with("ip=172.30.0.10::172.30.0.1:255.255.255.0:web:eth0:off")
        );
    }
}
