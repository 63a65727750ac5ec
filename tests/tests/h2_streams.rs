//! An HTTP/2 connection's streams run inside the connection's task, their
//! response deadlines share one timer, and response header names are
//! remembered per position on the thread: many streams of one connection
//! in flight together each get their own backend's answer with exactly its
//! headers (names spelled differently from one response to the next
//! included), and a stream whose backend never answers gets 504 at the
//! `response` timeout while the others are answered at once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use http_body_util::Empty;
use hyper::Request;
use palisade_tests::client::Http;
use palisade_tests::cluster::{node_config, service};
use palisade_tests::harness::{meshd, wait_generation, Scratch};
use schemas::duration::Duration as Wait;
use schemas::Protocol;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const CLIENT: &str = "127.0.207.9";
const NODE: &str = "127.0.207.1";
const PORT: u16 = 42701;
const BACKEND: &str = "127.0.207.2:42702";

/// The head the backend answers request `/n/<i>` with: the field names'
/// spelling and order change with `i`, so a name remembered from the last
/// response at a position is right only if it was checked.
fn head_for(i: usize) -> (String, Vec<(String, String)>) {
    let body = format!("answer {i}\n");
    let mut fields: Vec<(String, String)> = match i % 4 {
        0 => vec![
            ("Server".into(), "raw".into()),
            ("Date".into(), "Mon, 07 Dec 2026 22:00:00 GMT".into()),
            ("Content-Type".into(), "text/plain".into()),
            ("X-Seq".into(), i.to_string()),
        ],
        1 => vec![
            ("server".into(), "raw".into()),
            ("X-Seq".into(), i.to_string()),
            ("content-type".into(), "text/plain".into()),
            ("X-Only-One".into(), "yes".into()),
        ],
        2 => vec![
            ("SERVER".into(), "raw".into()),
            ("x-seq".into(), i.to_string()),
            ("X-Other".into(), "b".into()),
            // As long as `X-Only-One` at the same position: only the
            // bytes tell them apart.
            ("X-Nope-Two".into(), "c".into()),
        ],
        _ => vec![
            ("Server".into(), "raw".into()),
            ("Date".into(), "Mon, 07 Dec 2026 22:00:00 GMT".into()),
            ("x-SEQ".into(), i.to_string()),
            ("Etag".into(), format!("\"{i}\"")),
            ("Vary".into(), "accept".into()),
        ],
    };
    fields.push(("Content-Length".into(), body.len().to_string()));
    let mut head = String::from("HTTP/1.1 200 OK\r\n");
    for (n, v) in &fields {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    head.push_str(&body);
    (head, fields)
}

/// One backend connection: answers `/n/<i>` with `head_for(i)`, never
/// answers `/stall` (and reads nothing more on that connection).
async fn backend_conn(mut s: TcpStream) {
    let mut buf = Vec::new();
    loop {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end + 4);
        let path = head.split(' ').nth(1).unwrap_or("").to_owned();
        if path == "/stall" {
            // Hold the connection open, silent, until meshd gives up on it.
            let _ = s.read_to_end(&mut Vec::new()).await;
            return;
        }
        let i: usize = path.trim_start_matches("/n/").parse().unwrap();
        if s.write_all(head_for(i).0.as_bytes()).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_in_flight_together_get_their_own_answers_and_deadlines() {
    let listener = TcpListener::bind(BACKEND).await.unwrap();
    let backend = tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(backend_conn(s));
        }
    });
    let mut svc = service("/h2s/app", PORT, Protocol::Http, &[(BACKEND, "app.1")]);
    svc.timeouts.response = Some("1s".parse::<Wait>().unwrap());
    let dir = Scratch::new("h2streams");
    dir.write("nodes/h2s.yaml", &node_config("h2s", NODE, 1, vec![svc]));
    let (_mesh, admin) = meshd("h2s", &dir.path("nodes"), &[]);
    wait_generation(admin, 1).await;
    let dest = format!("{NODE}:{PORT}").parse().unwrap();
    let client = Http::connect(CLIENT, dest, true).await.unwrap();
    let Http::H2(sender) = client else {
        panic!("not an HTTP/2 connection")
    };

    let get = |path: String| {
        let mut h2 = Http::H2(sender.clone());
        async move {
            let req = Request::get(format!("http://mesh.test{path}"))
                .body(Empty::<Bytes>::new())
                .unwrap();
            let started = Instant::now();
            let answer = h2.send(req).await;
            (answer, started.elapsed())
        }
    };
    let started = Instant::now();
    let stalls: Vec<_> = (0..2).map(|_| tokio::spawn(get("/stall".into()))).collect();
    // Three rounds of 24 streams at once, each round after the last: the
    // same positions see other spellings from one response to the next.
    for round in 0..3 {
        let answers: Vec<_> = (0..24)
            .map(|k| {
                let i = round * 24 + k;
                (i, tokio::spawn(get(format!("/n/{i}"))))
            })
            .collect();
        for (i, answer) in answers {
            let (answer, took) = answer.await.unwrap();
            let answer = answer.unwrap_or_else(|e| panic!("/n/{i}: {e}"));
            assert_eq!(answer.status, 200, "/n/{i}");
            assert!(took < Duration::from_millis(900), "/n/{i} took {took:?}");
            assert_eq!(answer.body, format!("answer {i}\n"));
            let (_, fields) = head_for(i);
            let got: Vec<(String, String)> = answer
                .headers
                .iter()
                .filter(|(n, _)| *n != "date" || fields.iter().any(|(f, _)| f == "Date"))
                .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap().to_owned()))
                .collect();
            let want: Vec<(String, String)> = fields
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
                .collect();
            let mut got_sorted = got.clone();
            got_sorted.sort();
            let mut want_sorted = want.clone();
            want_sorted.sort();
            assert_eq!(got_sorted, want_sorted, "/n/{i}: got {got:?}");
        }
    }
    for stall in stalls {
        let (answer, took) = stall.await.unwrap();
        let answer = answer.unwrap();
        assert_eq!(answer.status, 504, "a silent backend is cut off");
        assert!(
            took >= Duration::from_millis(950) && took < Duration::from_secs(4),
            "504 after {took:?}, the response timeout is 1s"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    // The connection still serves after its stalled streams ended.
    let (answer, _) = get("/n/7".into()).await;
    assert_eq!(answer.unwrap().status, 200);
    backend.abort();
}
