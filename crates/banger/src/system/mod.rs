//! system: installing banger as two services (`banger system ...`). `ops` is what each
//! command does, `supervise` runs the services where systemd is not PID 1, `units`
//! generates the systemd units where it is, `owner_dirs` creates the owner's directories
//! the daemon may write (safely, as root, in the owner's home), `drift` checks the modes of what an
//! installation created (for `doctor`). Paths come from `banger_model::system`, below
//! `BANGER_SYSTEM_ROOT` when tests set it.

pub mod drift;
pub mod ops;
pub mod owner_dirs;
pub mod supervise;
pub mod units;
