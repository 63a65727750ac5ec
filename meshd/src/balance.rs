//! Backend selection, one module per policy. Every policy picks among the
//! backends that may take work now (healthy in the node config, not
//! ejected); `exclude` lists backends this request already tried. Pure:
//! load figures come in through `Pickable`, randomness as an argument.

pub mod least_request;
pub mod p2c_ewma;
pub mod round_robin;
pub mod source_hash;

use schemas::Balance;
use std::net::IpAddr;
use std::sync::atomic::AtomicUsize;

pub use round_robin::PickOrder;

/// What a policy may know of a backend.
pub trait Pickable {
    /// Relative share of new work (at least 1).
    fn weight(&self) -> u32;
    /// Requests or connections in flight now.
    fn in_flight(&self) -> u32;
    /// Moving average of time to first byte, in nanoseconds (0: not measured yet).
    fn latency_ns(&self) -> u64;
    /// A stable hash of the backend's identity (task and address).
    fn key_hash(&self) -> u64;
}

/// Everything one pick needs besides the backends.
#[derive(Debug)]
pub struct PickInput<'a> {
    /// The policy.
    pub balance: Balance,
    /// Healthy backends in weighted round-robin order, built at reload.
    pub order: &'a PickOrder,
    /// Shared round-robin cursor of the service.
    pub cursor: &'a AtomicUsize,
    /// The downstream peer, for `source_hash`.
    pub source: IpAddr,
    /// Two uniform random numbers in [0, 1), for `p2c_ewma`.
    pub random: (f64, f64),
}

/// Picks a backend index, or `None` when nothing is eligible. `out(i)` says
/// whether backend `i` is ejected or already tried.
pub fn pick<B: Pickable>(
    input: &PickInput<'_>,
    backends: &[B],
    out: impl Fn(usize) -> bool,
) -> Option<usize> {
    match input.balance {
        Balance::RoundRobin => round_robin::pick(input.order, input.cursor, &out),
        Balance::LeastRequest => least_request::pick(input.order, input.cursor, backends, &out),
        Balance::P2cEwma => p2c_ewma::pick(input.order, backends, input.random, &out),
        Balance::SourceHash => source_hash::pick(input.order, backends, input.source, &out),
    }
}

/// A fast 64-bit mixer (splitmix64 finaliser), for hashing without allocation.
pub fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Hashes bytes (FNV-1a, then mixed); used at reload for backend keys.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix(h)
}

#[cfg(test)]
pub(crate) mod testing {
    use super::Pickable;

    /// A backend with fixed load figures.
    #[derive(Debug, Clone, Copy)]
    pub struct Fake {
        pub weight: u32,
        pub in_flight: u32,
        pub latency_ns: u64,
        pub key: u64,
    }

    impl Fake {
        pub fn new(key: u64) -> Fake {
            Fake {
                weight: 1,
                in_flight: 0,
                latency_ns: 0,
                key,
            }
        }
    }

    impl Pickable for Fake {
        fn weight(&self) -> u32 {
            self.weight
        }
        fn in_flight(&self) -> u32 {
            self.in_flight
        }
        fn latency_ns(&self) -> u64 {
            self.latency_ns
        }
        fn key_hash(&self) -> u64 {
            super::mix(self.key)
        }
    }
}
