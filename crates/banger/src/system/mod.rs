//! system: installing banger as two services (`banger system ...`). `ops` is what each
//! command does, `supervise` runs the services where systemd is not PID 1, `units`
//! generates the systemd units where it is, `drift` checks the modes of what an
//! installation created (for `doctor`). Paths come from `banger_model::system`, below
//! `BANGER_SYSTEM_ROOT` when tests set it.

pub mod drift;
pub mod ops;
pub mod supervise;
pub mod units;
