//! Source hash: the same client address goes to the same backend, by
//! weighted rendezvous hashing, so when backends come and go only the
//! clients of those backends move.

use super::{mix, PickOrder, Pickable};
use std::net::IpAddr;

fn address_hash(addr: IpAddr) -> u64 {
    match addr {
        IpAddr::V4(v4) => mix(u64::from(u32::from(v4))),
        IpAddr::V6(v6) => {
            let x = u128::from(v6);
            mix((x as u64) ^ mix((x >> 64) as u64))
        }
    }
}

/// The eligible backend with the highest weighted score for `source`.
pub fn pick<B: Pickable>(
    order: &PickOrder,
    backends: &[B],
    source: IpAddr,
    out: &impl Fn(usize) -> bool,
) -> Option<usize> {
    let s = address_hash(source);
    order
        .healthy()
        .iter()
        .copied()
        .filter(|&i| !out(i))
        .map(|i| {
            let b = &backends[i];
            let h = mix(s ^ b.key_hash());
            // u in (0, 1]; score = weight / -ln(u) is weighted rendezvous.
            let u = ((h >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
            (
                f64::from(b.weight().max(1)) / -u.ln().min(-f64::MIN_POSITIVE),
                i,
            )
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, i)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::testing::Fake;

    fn order(n: usize) -> PickOrder {
        PickOrder::weighted(&(0..n).map(|i| (i, 1)).collect::<Vec<_>>())
    }

    #[test]
    fn same_source_same_backend_and_sources_spread() {
        let bs: Vec<Fake> = (0..4).map(Fake::new).collect();
        let o = order(4);
        let a: IpAddr = "127.0.1.1".parse().unwrap();
        let first = pick(&o, &bs, a, &|_| false);
        assert!((0..10).all(|_| pick(&o, &bs, a, &|_| false) == first));
        let mut seen = [0; 4];
        for i in 0..400u32 {
            let src = IpAddr::V4((0x7f00_0000 + i).into());
            seen[pick(&o, &bs, src, &|_| false).unwrap()] += 1;
        }
        assert!(seen.iter().all(|&c| c > 50), "{seen:?}");
    }

    #[test]
    fn removing_a_backend_moves_only_its_clients() {
        let bs: Vec<Fake> = (0..5).map(Fake::new).collect();
        let o = order(5);
        let mut moved = 0;
        for i in 0..500u32 {
            let src = IpAddr::V4((0x7f01_0000 + i).into());
            let before = pick(&o, &bs, src, &|_| false).unwrap();
            let after = pick(&o, &bs, src, &|b| b == 2).unwrap();
            if before != 2 {
                assert_eq!(before, after, "a client of a remaining backend moved");
            } else {
                moved += 1;
            }
        }
        assert!(moved > 0);
    }
}
