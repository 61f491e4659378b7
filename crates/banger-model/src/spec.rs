//! A VM's requested resources (vCPUs, memory, root disk) and the limits they must respect.
//! Both the CLI (to fail before a round trip) and the daemon (authoritative) validate.

use serde::{Deserialize, Serialize};

use crate::size::{ByteSize, GIB, MIB};

/// Smallest memory a guest gets; below this the Debian image does not boot reliably.
pub const MIN_MEMORY: ByteSize = ByteSize(128 * MIB);
/// Smallest root disk; images are at least a few hundred MiB and need room to work.
pub const MIN_DISK: ByteSize = ByteSize(GIB);

/// What a VM asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmSpec {
    pub vcpus: u32,
    pub memory: ByteSize,
    pub disk: ByteSize,
}

impl Default for VmSpec {
    /// 1 vCPU, 512 MiB of memory, a 4 GiB root disk.
    fn default() -> Self {
        VmSpec {
            vcpus: 1,
            memory: ByteSize::from_mib(512),
            disk: ByteSize::from_gib(4),
        }
    }
}

/// Host-dependent limits a spec is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecLimits {
    /// The host's cores, or a lower cap from the configuration.
    pub max_vcpus: u32,
    /// The host's memory (`MemTotal`): a guest asking for more cannot start.
    pub max_memory: ByteSize,
}

impl SpecLimits {
    /// No host limits: what the CLI checks before it knows the daemon's host.
    pub const UNBOUNDED: SpecLimits = SpecLimits {
        max_vcpus: u32::MAX,
        max_memory: ByteSize(u64::MAX),
    };
}

/// Why a spec was rejected. Messages name the field, the value and the limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("vcpus is {value}; it must be between 1 and {max} on this host")]
    Vcpus { value: u32, max: u32 },
    #[error("memory is {value}; it must be at least {min}")]
    MemoryTooSmall { value: ByteSize, min: ByteSize },
    #[error("memory is {value}; it must be a whole number of MiB")]
    MemoryNotWholeMib { value: ByteSize },
    #[error("memory is {value}; it must be at most {max}, this host's memory")]
    MemoryTooLarge { value: ByteSize, max: ByteSize },
    #[error("disk is {value}; it must be at least {min}")]
    DiskTooSmall { value: ByteSize, min: ByteSize },
    #[error("disk is {value}; it must be a whole number of MiB")]
    DiskNotWholeMib { value: ByteSize },
}

impl VmSpec {
    /// Checks every field; reports the first problem in field order.
    pub fn validate(&self, limits: &SpecLimits) -> Result<(), SpecError> {
        if self.vcpus == 0 || self.vcpus > limits.max_vcpus {
            return Err(SpecError::Vcpus {
                value: self.vcpus,
                max: limits.max_vcpus,
            });
        }
        if self.memory < MIN_MEMORY {
            return Err(SpecError::MemoryTooSmall {
                value: self.memory,
                min: MIN_MEMORY,
            });
        }
        if !self.memory.is_whole_mib() {
            return Err(SpecError::MemoryNotWholeMib { value: self.memory });
        }
        if self.memory > limits.max_memory {
            return Err(SpecError::MemoryTooLarge {
                value: self.memory,
                max: limits.max_memory,
            });
        }
        if self.disk < MIN_DISK {
            return Err(SpecError::DiskTooSmall {
                value: self.disk,
                min: MIN_DISK,
            });
        }
        if !self.disk.is_whole_mib() {
            return Err(SpecError::DiskNotWholeMib { value: self.disk });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: SpecLimits = SpecLimits {
        max_vcpus: 4,
        max_memory: ByteSize(16 * GIB),
    };

    fn spec(vcpus: u32, memory: u64, disk: u64) -> VmSpec {
        VmSpec {
            vcpus,
            memory: ByteSize(memory),
            disk: ByteSize(disk),
        }
    }

    #[test]
    fn default_is_valid() {
        let default = VmSpec::default();
        assert_eq!(default, spec(1, 512 * MIB, 4 * GIB));
        assert_eq!(default.validate(&LIMITS), Ok(()));
    }

    #[test]
    fn validation_table() {
        let ok = Ok(());
        let cases: Vec<(VmSpec, Result<(), SpecError>)> = vec![
            (spec(1, 128 * MIB, GIB), ok.clone()),
            (spec(4, 8 * GIB, 100 * GIB), ok.clone()),
            (spec(1, 16 * GIB, 4 * GIB), ok.clone()),
            (
                spec(1, 16 * GIB + MIB, 4 * GIB),
                Err(SpecError::MemoryTooLarge {
                    value: ByteSize(16 * GIB + MIB),
                    max: ByteSize(16 * GIB),
                }),
            ),
            (spec(2, 129 * MIB, GIB + MIB), ok.clone()),
            (
                spec(0, GIB, 4 * GIB),
                Err(SpecError::Vcpus { value: 0, max: 4 }),
            ),
            (
                spec(5, GIB, 4 * GIB),
                Err(SpecError::Vcpus { value: 5, max: 4 }),
            ),
            (
                spec(1, 127 * MIB, 4 * GIB),
                Err(SpecError::MemoryTooSmall {
                    value: ByteSize(127 * MIB),
                    min: MIN_MEMORY,
                }),
            ),
            (
                spec(1, 128 * MIB + 512 * 1024, 4 * GIB),
                Err(SpecError::MemoryNotWholeMib {
                    value: ByteSize(128 * MIB + 512 * 1024),
                }),
            ),
            (
                spec(1, 512 * MIB, 1023 * MIB),
                Err(SpecError::DiskTooSmall {
                    value: ByteSize(1023 * MIB),
                    min: MIN_DISK,
                }),
            ),
            (
                spec(1, 512 * MIB, GIB + 1),
                Err(SpecError::DiskNotWholeMib {
                    value: ByteSize(GIB + 1),
                }),
            ),
        ];
        for (spec, expected) in cases {
            assert_eq!(spec.validate(&LIMITS), expected, "{spec:?}");
        }
    }

    #[test]
    fn messages_name_field_value_and_limit() {
        let cases = [
            (
                spec(8, GIB, 4 * GIB),
                "vcpus is 8; it must be between 1 and 4 on this host",
            ),
            (
                spec(1, 64 * MIB, 4 * GIB),
                "memory is 64MiB; it must be at least 128MiB",
            ),
            (
                spec(1, GIB, 512 * MIB),
                "disk is 512MiB; it must be at least 1GiB",
            ),
            (
                spec(1, GIB + 1024, 4 * GIB),
                "memory is 1048577KiB; it must be a whole number of MiB",
            ),
            (
                spec(1, 1024 * GIB, 4 * GIB),
                "memory is 1TiB; it must be at most 16GiB, this host's memory",
            ),
        ];
        for (spec, message) in cases {
            assert_eq!(spec.validate(&LIMITS).unwrap_err().to_string(), message);
        }
    }

    #[test]
    fn serde_round_trip() {
        let json = serde_json::to_string(&VmSpec::default()).unwrap();
        assert_eq!(json, r#"{"vcpus":1,"memory":536870912,"disk":4294967296}"#);
        assert_eq!(
            serde_json::from_str::<VmSpec>(&json).unwrap(),
            VmSpec::default()
        );
    }
}
