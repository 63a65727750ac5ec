//! Where node configs come from: the watched directory (`file`), configsrv's
//! API through a cache file (`poll`), and the pure step that turns bytes
//! into a config to apply (`load`).

pub mod file;
pub mod load;
pub mod poll;
