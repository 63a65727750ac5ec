//! `h1_request` with structure: a method, a target, a header list and a
//! body, laid out as a request head, so the mutations land in the fields
//! that matter (framing, connection, host) rather than in the syntax.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Name {
    ContentLength,
    TransferEncoding,
    Host,
    Connection,
    Upgrade,
    Expect,
    XForwardedFor,
    XForwardedProto,
    XRequestId,
    Te,
    KeepAlive,
    Other(String),
}

#[derive(Debug, Arbitrary)]
enum Value {
    Length(u64),
    Chunked,
    Codings(Vec<String>),
    Tokens(Vec<String>),
    Raw(String),
}

#[derive(Debug, Arbitrary)]
struct Request {
    method: String,
    target: String,
    http10: bool,
    headers: Vec<(Name, Value)>,
    body: Vec<u8>,
}

impl Request {
    fn bytes(&self) -> Vec<u8> {
        let method = if self.method.is_empty() {
            "GET"
        } else {
            &self.method
        };
        let version = if self.http10 { "HTTP/1.0" } else { "HTTP/1.1" };
        let mut out = format!("{method} {} {version}\r\n", self.target).into_bytes();
        for (name, value) in &self.headers {
            let name = match name {
                Name::ContentLength => "Content-Length",
                Name::TransferEncoding => "Transfer-Encoding",
                Name::Host => "Host",
                Name::Connection => "Connection",
                Name::Upgrade => "Upgrade",
                Name::Expect => "Expect",
                Name::XForwardedFor => "X-Forwarded-For",
                Name::XForwardedProto => "X-Forwarded-Proto",
                Name::XRequestId => "X-Request-Id",
                Name::Te => "TE",
                Name::KeepAlive => "Keep-Alive",
                Name::Other(s) => s,
            };
            let value = match value {
                Value::Length(n) => n.to_string(),
                Value::Chunked => "chunked".to_owned(),
                Value::Codings(c) | Value::Tokens(c) => c.join(", "),
                Value::Raw(s) => s.clone(),
            };
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

fuzz_target!(|req: Request| palisade_fuzz::check_request(&req.bytes()));
