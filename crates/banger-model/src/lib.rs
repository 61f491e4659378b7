//! banger's domain types and the pure rules over them: VM names and ids, sizes, VM specs
//! and their limits, lifecycle states, network policies (allow-lists), guest signals, reference lookup, the built-in
//! catalog names, and the progress-reporting trait long operations use. Nothing here
//! does I/O, so every rule is table-tested and shared by the CLI and the daemon.

pub mod catalog;
pub mod copy;
pub mod dirs;
pub mod id;
pub mod lookup;
pub mod name;
pub mod policy;
pub mod progress;
pub mod publish;
pub mod signal;
pub mod size;
pub mod spec;
pub mod state;
pub mod system;
pub mod vm;
pub mod workspace;

pub use id::{IdError, VmId};
pub use lookup::{
    RefError, RefMatch, check_destructive, resolve_ref, resolve_ref_destructive, resolve_ref_match,
};
pub use name::{ImageName, KernelName, NameError, ResourceName, VmName, generate_vm_name};
pub use policy::{
    AllowRule, CheckAnswer, Destination, DestinationHost, HostPattern, NetPolicy, PolicyError,
    Ports,
};
pub use publish::{HostSide, PortProto, PortSpec, PortSpecError};
pub use signal::{GuestSignal, SignalError};
pub use size::{ByteSize, SizeError};
pub use spec::{SpecError, SpecLimits, VmSpec};
pub use state::{UnknownState, VmState};
pub use vm::{ForkOrigin, VmRecord, VmRuntime};
pub use workspace::{Workspace, WorkspaceDelivery};
