//! pool: handing out guest addresses from the configured subnet. The gateway (first host)
//! is the bridge's; guests get the lowest free address from `.2` upward. Which addresses
//! are taken is the daemon's knowledge (it keeps leases in SQLite and passes them in), so
//! leasing is a pure function and releasing is just forgetting the address.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use banger_proto::helper::Ipv4Subnet;

/// The guest address pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressPool {
    subnet: Ipv4Subnet,
}

impl AddressPool {
    pub fn new(subnet: Ipv4Subnet) -> AddressPool {
        AddressPool { subnet }
    }

    pub fn subnet(&self) -> Ipv4Subnet {
        self.subnet
    }

    pub fn gateway(&self) -> Ipv4Addr {
        self.subnet.gateway()
    }

    pub fn netmask(&self) -> Ipv4Addr {
        self.subnet.netmask()
    }

    /// How many guests the pool can hold.
    pub fn capacity(&self) -> usize {
        self.subnet.guest_addresses().count()
    }

    /// Whether `ip` may be given to a guest at all.
    pub fn is_leasable(&self, ip: Ipv4Addr) -> bool {
        self.subnet.is_guest_address(ip)
    }

    /// The lowest guest address not in `taken`, or `None` when the pool is full.
    pub fn lease(&self, taken: &HashSet<Ipv4Addr>) -> Option<Ipv4Addr> {
        self.subnet.guest_addresses().find(|ip| !taken.contains(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(cidr: &str) -> AddressPool {
        AddressPool::new(cidr.parse().unwrap())
    }

    fn set(ips: &[&str]) -> HashSet<Ipv4Addr> {
        ips.iter().map(|ip| ip.parse().unwrap()).collect()
    }

    #[test]
    fn leases() {
        let cases: &[(&str, &[&str], Option<&str>)] = &[
            ("172.30.0.0/24", &[], Some("172.30.0.2")),
            ("172.30.0.0/24", &["172.30.0.2"], Some("172.30.0.3")),
            // A released address (.2 no longer taken) is reused first.
            (
                "172.30.0.0/24",
                &["172.30.0.3", "172.30.0.4"],
                Some("172.30.0.2"),
            ),
            // Foreign or impossible addresses in the taken set change nothing.
            (
                "172.30.0.0/24",
                &["10.0.0.2", "172.30.0.1"],
                Some("172.30.0.2"),
            ),
            ("192.168.7.4/30", &[], Some("192.168.7.6")),
            ("192.168.7.4/30", &["192.168.7.6"], None),
            ("10.9.0.0/16", &[], Some("10.9.0.2")),
        ];
        for (cidr, taken, expected) in cases {
            let got = pool(cidr).lease(&set(taken));
            assert_eq!(
                got,
                expected.map(|ip| ip.parse().unwrap()),
                "{cidr} {taken:?}"
            );
        }
    }

    #[test]
    fn exhaustion_of_a_whole_pool() {
        let pool = pool("172.30.0.0/24");
        let mut taken = HashSet::new();
        while let Some(ip) = pool.lease(&taken) {
            assert!(pool.is_leasable(ip));
            assert!(taken.insert(ip), "{ip} leased twice");
        }
        assert_eq!(taken.len(), 253);
        assert_eq!(pool.capacity(), 253);
        assert!(!taken.contains(&pool.gateway()));
        assert!(!taken.contains(&"172.30.0.255".parse().unwrap()));
        // Releasing one makes exactly that one available again.
        let released: Ipv4Addr = "172.30.0.77".parse().unwrap();
        taken.remove(&released);
        assert_eq!(pool.lease(&taken), Some(released));
    }

    #[test]
    fn gateway_and_mask() {
        let pool = pool("172.30.0.0/24");
        assert_eq!(pool.gateway().to_string(), "172.30.0.1");
        assert_eq!(pool.netmask().to_string(), "255.255.255.0");
        assert!(!pool.is_leasable(pool.gateway()));
    }
}
