//! Where configsrv's inputs come from: Marathon, Mesos, the policy directory,
//! and offline snapshot files of the first two.

pub mod marathon;
pub mod mesos;
pub mod offline;
pub mod policy_dir;
