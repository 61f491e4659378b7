//! names: the host-side names a VM's network gets, derived from its id so they are stable
//! across restarts and recoverable after a daemon crash: the tap `bgt-<first 8 hex of the
//! id>` (12 bytes, inside the 15-byte interface name limit and the helper's `bgt-`
//! prefix) and a MAC address under `52:54:00`, whose first octet has the
//! locally-administered bit set and the multicast bit clear.

use std::fmt;

use banger_model::VmId;

/// The tap interface for a VM.
pub fn tap_name(vm_id: &VmId) -> String {
    format!("{}{}", banger_proto::helper::TAP_PREFIX, vm_id.short())
}

/// A MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddress(pub [u8; 6]);

impl fmt::Display for MacAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// The guest NIC's MAC for a VM: `52:54:00` then 24 bits folded from all 64 bits of the
/// id, so VMs whose ids share a prefix still differ.
pub fn mac_address(vm_id: &VmId) -> MacAddress {
    // Ids are 16 hex characters by construction; a value that somehow is not still gets
    // a deterministic MAC from its bytes.
    let bits = u64::from_str_radix(vm_id.as_str(), 16).unwrap_or_else(|_| {
        vm_id
            .as_str()
            .bytes()
            .fold(0u64, |acc, b| acc.rotate_left(8) ^ u64::from(b))
    });
    let folded = (bits ^ (bits >> 24) ^ (bits >> 48)) & 0x00ff_ffff;
    let [_, _, _, _, _, x, y, z] = folded.to_be_bytes();
    MacAddress([0x52, 0x54, 0x00, x, y, z])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> VmId {
        VmId::parse(text).unwrap()
    }

    #[test]
    fn tap_names() {
        let cases = [
            ("0123456789abcdef", "bgt-01234567"),
            ("ffffffff00000000", "bgt-ffffffff"),
        ];
        for (vm, tap) in cases {
            let name = tap_name(&id(vm));
            assert_eq!(name, tap);
            assert_eq!(
                banger_proto::helper::check_tap_name(&name),
                Ok(()),
                "{name}"
            );
        }
    }

    #[test]
    fn macs() {
        let cases = [
            ("0000000000000000", "52:54:00:00:00:00"),
            ("0000000000abcdef", "52:54:00:ab:cd:ef"),
            ("0123456789abcdef", "52:54:00:ee:ab:45"),
        ];
        for (vm, mac) in cases {
            assert_eq!(mac_address(&id(vm)).to_string(), mac, "{vm}");
        }
        // Same short id (same tap prefix), different MACs.
        assert_ne!(
            mac_address(&id("0123456700000001")),
            mac_address(&id("0123456700000002"))
        );
        let first = mac_address(&id("0123456789abcdef")).0[0];
        assert_eq!(first & 0x02, 0x02, "locally administered");
        assert_eq!(first & 0x01, 0x00, "unicast");
    }
}
