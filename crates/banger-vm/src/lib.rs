//! The VM lifecycle service: create, boot, stop, kill, delete, reconcile; root disks and
//! the offline guest patch; work inside guests through the agent. The daemon wires it to
//! the store, the image service and a VMM driver, and maps its errors to API codes.

pub mod cmdline;
mod create;
mod delete;
pub mod disk;
mod early_boot;
pub mod error;
pub mod fault;
mod guest;
mod handle_file;
pub mod layout;
mod lifecycle;
mod net;
pub mod patch;
pub mod policy;
mod publish;
mod reconcile;
mod reconcile_net;
mod reserve;
pub mod resolv;
mod service;
mod spare;
pub mod template;
mod trash;
pub mod warm;
pub mod workspace;

pub use create::CreateRequest;
pub use error::{VmError, VmErrorKind, chain};
pub use guest::VmUsage;
pub use lifecycle::SetRequest;
pub use policy::{PolicyStatus, effective_nat};
pub use publish::PublishedPort;
pub use reconcile::ReconcileReport;
pub use reconcile_net::{NetCleanup, NetOwners, plan_cleanup};
pub use service::{StoreAccess, VmService, VmServiceConfig, artifact_of, init_name};
pub use warm::{ForkRequest, SnapshotPaths};
pub use workspace::WorkspaceRequest;
