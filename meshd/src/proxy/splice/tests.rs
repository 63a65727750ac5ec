//! The splicing tunnel on real loopback sockets: bursts take the pipe and
//! arrive whole, small messages never do, and a quiet direction holds no pipe.

use super::*;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A connected pair of loopback sockets.
async fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (s, _) = l.accept().await.unwrap();
    (c, s)
}

/// client <-> a (tunnel) b <-> server.
async fn tunnel() -> (TcpStream, Watched<TcpStream>, Watched<TcpStream>, TcpStream) {
    let (client, a) = pair().await;
    let (b, server) = pair().await;
    let seen = Arc::new(AtomicBool::new(false));
    (
        client,
        Watched::new(a, Arc::clone(&seen)),
        Watched::new(b, seen),
        server,
    )
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 4096) as u8).collect()
}

fn holds_no_pipe(lane: &Lane) -> bool {
    lane.burst.as_ref().is_none_or(|b| b.pipe.is_none())
}

#[tokio::test]
async fn a_burst_is_spliced_and_arrives_whole_then_ends_propagate() {
    let (mut client, mut a, mut b, mut server) = tunnel().await;
    let big = pattern(3 << 20);
    let mut copy = both_ways(&mut a, &mut b);
    let sent = big.clone();
    let ends = async {
        let (mut cr, mut cw) = client.split();
        let write = async {
            cw.write_all(&sent).await.unwrap();
            cw.shutdown().await.unwrap();
        };
        let read = async {
            let mut got = Vec::new();
            server.read_to_end(&mut got).await.unwrap();
            server.write_all(b"pong").await.unwrap();
            server.shutdown().await.unwrap();
            got
        };
        let ((), got) = tokio::join!(write, read);
        let mut back = Vec::new();
        cr.read_to_end(&mut back).await.unwrap();
        (got, back)
    };
    let (moved, (got, back)) = tokio::join!(&mut copy, ends);
    assert!(got == big, "the burst came through changed");
    assert_eq!(back, b"pong");
    assert_eq!(moved.unwrap(), (3 << 20, 4));
    assert!(copy.spliced() > 2 << 20, "spliced only {}", copy.spliced());
    assert!(holds_no_pipe(&copy.a_to_b) && holds_no_pipe(&copy.b_to_a));
}

#[tokio::test]
async fn small_messages_are_copied_and_a_quiet_direction_holds_no_pipe() {
    let (mut client, mut a, mut b, mut server) = tunnel().await;
    let mut copy = both_ways(&mut a, &mut b);
    let exchanges = async {
        for i in 0..50u32 {
            let msg = format!("request {i}\n");
            client.write_all(msg.as_bytes()).await.unwrap();
            let mut got = vec![0u8; msg.len()];
            server.read_exact(&mut got).await.unwrap();
            server.write_all(&got).await.unwrap();
            client.read_exact(&mut got).await.unwrap();
            assert_eq!(got, msg.as_bytes());
        }
    };
    tokio::select! {
        r = &mut copy => panic!("tunnel ended: {r:?}"),
        () = exchanges => {}
    }
    assert_eq!(copy.spliced(), 0, "small messages took the pipe");

    // A burst one way, then quiet: the pipe goes back; then small
    // messages are copied again (at most the first one spliced).
    let big = pattern(1 << 20);
    let burst = async {
        let (w, r) = tokio::join!(server.write_all(&big), async {
            let mut got = vec![0u8; big.len()];
            client.read_exact(&mut got).await.map(|_| got)
        });
        w.unwrap();
        assert!(r.unwrap() == big, "the burst came through changed");
    };
    tokio::select! {
        r = &mut copy => panic!("tunnel ended: {r:?}"),
        () = burst => {}
    }
    let after_burst = copy.spliced();
    assert!(after_burst > 512 << 10, "spliced only {after_burst}");
    assert!(
        holds_no_pipe(&copy.b_to_a),
        "a quiet direction kept its pipe"
    );
    let replies = async {
        for i in 0..10u32 {
            let msg = format!("reply {i}\n");
            server.write_all(msg.as_bytes()).await.unwrap();
            let mut got = vec![0u8; msg.len()];
            client.read_exact(&mut got).await.unwrap();
            assert_eq!(got, msg.as_bytes());
        }
    };
    tokio::select! {
        r = &mut copy => panic!("tunnel ended: {r:?}"),
        () = replies => {}
    }
    assert!(copy.spliced() - after_burst <= "reply 0\n".len() as u64);
    assert!(copy.b_to_a.burst.is_none(), "still splicing small messages");
    // 10 requests of 10 bytes and 40 of 11, echoed; 1 MiB; 10 replies of 8.
    assert_eq!(copy.moved(), (540, 540 + (1 << 20) + 80));
}

#[tokio::test]
async fn a_tunnel_stopped_mid_burst_closes_both_sides() {
    let (mut client, mut a, mut b, mut server) = tunnel().await;
    let big = pattern(16 << 20);
    let sent = big.clone();
    // The server reads nothing yet: its side fills, then a pipe holds bytes.
    let writer = tokio::spawn(async move { client.write_all(&sent).await });
    let cached;
    {
        let mut copy = both_ways(&mut a, &mut b);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while copy.a_to_b.burst.as_ref().is_none_or(|b| b.held == 0) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no bytes waited in a pipe"
            );
            tokio::select! {
                r = &mut copy => panic!("tunnel ended: {r:?}"),
                () = tokio::time::sleep(std::time::Duration::from_millis(5)) => {}
            }
        }
        // Dropped as a drain deadline or a revocation drops it: the pipe
        // with its bytes is closed, not cached.
        cached = PIPES.with(|c| c.borrow().len());
    }
    drop((a, b));
    let mut got = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        server.read_to_end(&mut got),
    )
    .await
    .expect("the backend side closed")
    .ok();
    assert!(
        got.len() < big.len(),
        "everything arrived: nothing was held"
    );
    assert!(got[..] == big[..got.len()], "what arrived changed");
    let w = tokio::time::timeout(std::time::Duration::from_secs(10), writer)
        .await
        .expect("the client side closed")
        .unwrap();
    assert!(
        w.is_err(),
        "the client could write 16 MiB into a closed tunnel"
    );
    assert_eq!(
        PIPES.with(|c| c.borrow().len()),
        cached,
        "a pipe with bytes went back to the cache"
    );
}
