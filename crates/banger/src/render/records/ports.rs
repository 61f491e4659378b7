//! The `--json` records of `vm ports` (one VM: an object) and of a published port
//! (`vm port publish` and `unpublish`: an array, of what was published or removed).

use banger_api::types::{PortInfo, PublishedPortInfo, VmPortsOutput, VmState};
use serde::Serialize;

/// A VM's published ports and the sockets listening in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortsJson {
    pub vm: String,
    pub state: VmState,
    pub address: Option<String>,
    pub published: Vec<PublishedJson>,
    pub listening: Vec<ListeningJson>,
}

/// A host port forwarded to a guest port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublishedJson {
    pub proto: String,
    pub host_ip: String,
    pub host_port: u16,
    pub guest_port: u16,
    pub host_endpoint: String,
    pub guest_endpoint: Option<String>,
    pub spec: String,
    pub active: bool,
}

/// A socket listening in the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListeningJson {
    pub proto: String,
    pub port: u16,
    pub bind: String,
    pub endpoint: String,
    pub address_endpoint: Option<String>,
    pub process: Option<String>,
}

impl From<&VmPortsOutput> for PortsJson {
    fn from(p: &VmPortsOutput) -> PortsJson {
        PortsJson {
            vm: p.vm.clone(),
            state: p.state,
            address: p.address.clone(),
            published: super::all(&p.published),
            listening: super::all(&p.listening),
        }
    }
}

impl From<&PublishedPortInfo> for PublishedJson {
    fn from(p: &PublishedPortInfo) -> PublishedJson {
        PublishedJson {
            proto: p.proto.clone(),
            host_ip: p.host_ip.clone(),
            host_port: p.host_port,
            guest_port: p.guest_port,
            host_endpoint: p.host_endpoint.clone(),
            guest_endpoint: p.guest_endpoint.clone(),
            spec: p.spec.clone(),
            active: p.active,
        }
    }
}

impl From<&PortInfo> for ListeningJson {
    fn from(p: &PortInfo) -> ListeningJson {
        ListeningJson {
            proto: p.proto.clone(),
            port: p.port,
            bind: p.bind.clone(),
            endpoint: p.endpoint.clone(),
            address_endpoint: p.address_endpoint.clone(),
            process: p.process.clone(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> VmPortsOutput {
        VmPortsOutput {
            vm: "web".into(),
            state: VmState::Running,
            address: Some("10.77.0.2".into()),
            published: vec![PublishedPortInfo {
                proto: "tcp".into(),
                host_ip: "127.0.0.1".into(),
                host_port: 8080,
                guest_port: 80,
                host_endpoint: "127.0.0.1:8080".into(),
                guest_endpoint: Some("10.77.0.2:80".into()),
                spec: "127.0.0.1:8080:80/tcp".into(),
                active: true,
            }],
            listening: vec![PortInfo {
                proto: "tcp".into(),
                port: 80,
                bind: "0.0.0.0".into(),
                endpoint: "web.vm:80".into(),
                address_endpoint: Some("10.77.0.2:80".into()),
                process: None,
            }],
        }
    }

    #[test]
    fn ports_of_a_running_vm() {
        insta::assert_json_snapshot!(PortsJson::from(&sample()));
    }
}
