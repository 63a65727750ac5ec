//! The channel against hand-written servers on 127.0.0.1: stalled answers
//! time out, oversize bodies are refused whether announced or not.

#![allow(clippy::unwrap_used)]

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[test]
fn config_url_may_be_a_base_or_the_node_url() {
    let n: NodeName = "agent-5".parse().unwrap();
    assert_eq!(
        node_url("http://cs:9900", &n).unwrap().to_string(),
        "http://cs:9900/v1/nodes/agent-5/config"
    );
    assert_eq!(
        node_url("http://cs:9900/", &n).unwrap().path(),
        "/v1/nodes/agent-5/config"
    );
    assert_eq!(
        node_url("http://cs:9900/v1/nodes/x/config", &n)
            .unwrap()
            .path(),
        "/v1/nodes/x/config"
    );
    assert!(node_url("https://cs", &n).is_ok());
    assert!(node_url("ftp://cs", &n).is_err());
    assert!(node_url("cs:9900", &n).is_err());
    let creds = node_url("http://u:pw@cs:9900", &n).unwrap_err().to_string();
    assert!(creds.contains("***@cs") && !creds.contains("pw"), "{creds}");
}

#[test]
fn https_needs_a_ca_and_a_ca_needs_https() {
    let n: NodeName = "n".parse().unwrap();
    let e = Channel::new("https://cs:9900", &n, None, None, 1).unwrap_err();
    assert!(e.to_string().contains("--config-ca"), "{e}");
    let e = Channel::new("http://cs", &n, None, Some(Path::new("ca.pem")), 1).unwrap_err();
    assert!(e.to_string().contains("https"), "{e}");
}

/// A server that answers the first request with `head` and `body`, then holds the connection.
async fn one_answer(head: &'static str, body: Vec<u8>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await;
        let _ = s.write_all(head.as_bytes()).await;
        let _ = s.write_all(&body).await;
        // Hold the connection open: a stalled configsrv or a slow link.
        tokio::time::sleep(Duration::from_secs(3600)).await;
    });
    url
}

fn channel(url: &str, max_bytes: u64) -> Channel {
    let n: NodeName = "n".parse().unwrap();
    let mut ch = Channel::new(url, &n, None, None, max_bytes).unwrap();
    ch.timeout = Duration::from_millis(300);
    ch
}

#[tokio::test]
async fn a_body_that_stalls_times_out_as_a_whole() {
    // Headers arrive at once; the body never finishes.
    let url = one_answer(
        "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
        b"apiVersion".to_vec(),
    )
    .await;
    let ch = channel(&url, 1000);
    let outcome = tokio::time::timeout(Duration::from_secs(10), fetch(&ch, None)).await;
    match outcome {
        Ok(Err(PollError::Timeout { .. })) => {}
        Ok(Err(e)) => panic!("another error: {e}"),
        Ok(Ok(_)) => panic!("a half body was taken"),
        Err(_) => panic!("the fetch still waits after 10 s"),
    }
}

#[tokio::test]
async fn a_body_over_the_cap_is_refused_announced_or_not() {
    let announced = one_answer(
        "HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n",
        vec![b'#'; 5000],
    )
    .await;
    let chunked = one_answer(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        [
            format!("{:x}\r\n", 5000).into_bytes(),
            vec![b'#'; 5000],
            b"\r\n0\r\n\r\n".to_vec(),
        ]
        .concat(),
    )
    .await;
    for url in [announced, chunked] {
        match fetch(&channel(&url, 1000), None).await {
            Ok(Fetched::Refused(e, _)) => assert!(e.to_string().contains("1000 bytes"), "{e}"),
            Ok(_) => panic!("{url}: the body was taken"),
            Err(e) => panic!("{url}: {e}"),
        }
    }
}
