#![allow(clippy::unwrap_used)]
use super::*;
use proptest::prelude::*;

#[test]
fn reads_what_meshd_writes() {
    let body = b"# HELP palisade_meshd_requests_total HTTP requests\n\
# TYPE palisade_meshd_requests_total counter\n\
palisade_meshd_requests_total{dst_app=\"/shop/web\",code=\"2xx\"} 12\n\
palisade_meshd_request_duration_seconds_bucket{dst_app=\"/shop/web\",le=\"+Inf\"} 12\n\
palisade_meshd_request_duration_seconds_sum{dst_app=\"/shop/web\"} 0.0123\n\
palisade_meshd_reloads_total 3 1700000000000\r\n\
\n";
    let samples = parse(body).unwrap();
    assert_eq!(samples.len(), 4);
    assert_eq!(samples[0].name, "palisade_meshd_requests_total");
    assert_eq!(samples[0].label("code"), Some("2xx"));
    assert_eq!(samples[0].value, 12.0);
    assert_eq!(samples[1].label("le"), Some("+Inf"));
    assert!((samples[2].value - 0.0123).abs() < 1e-12);
    assert!(samples[3].labels.is_empty());
    assert_eq!(samples[3].value, 3.0);
}

#[test]
fn special_values_and_escapes() {
    let body = br#"a{x="q\"uo\\te\nnl"} +Inf
b -Inf
c NaN
d{} 1e3
e{x="1",} 2
"#;
    let s = parse(body).unwrap();
    assert_eq!(s[0].label("x"), Some("q\"uo\\te\nnl"));
    assert_eq!(s[0].value, f64::INFINITY);
    assert_eq!(s[1].value, f64::NEG_INFINITY);
    assert!(s[2].value.is_nan());
    assert_eq!(s[3].value, 1000.0);
    assert_eq!(s[4].labels, vec![("x".to_owned(), "1".to_owned())]);
}

#[test]
fn garbage_is_a_clear_error_naming_the_line() {
    for (body, line) in [
        (&b"ok 1\n<html>hello</html>\n"[..], 2),
        (b"a{x=\"1\" 1\n", 1),
        (b"a{x=1} 1\n", 1),
        (b"a{x=\"1\"} one\n", 1),
        (b"a\n", 1),
        (b"a{x=\"unterminated} 1\n", 1),
        (b"a 1 notatime\n", 1),
        (b"a 1 2 3\n", 1),
        (b"1a 1\n", 1),
        (b"a{x=\"\\q\"} 1\n", 1),
        (b"a{x=\"\xff\"} 1\n", 1),
        (b"a inf\n", 1),
        (b"ok 1\nok 2\n\x00\x01\x02\n", 3),
    ] {
        match parse(body) {
            Err(ParseError::Line { line: l, message }) => {
                assert_eq!(l, line, "{body:?}: {message}");
                assert!(!message.is_empty());
            }
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(body)),
        }
    }
}

#[test]
fn bounded() {
    let big = vec![b'#'; MAX_BODY + 1];
    assert_eq!(parse(&big), Err(ParseError::TooLarge { limit: MAX_BODY }));
    let many = "a 1\n".repeat(MAX_SAMPLES + 1);
    assert_eq!(
        parse(many.as_bytes()),
        Err(ParseError::TooManySamples { limit: MAX_SAMPLES })
    );
    let labels: Vec<String> = (0..=MAX_LABELS).map(|i| format!("l{i}=\"v\"")).collect();
    let line = format!("a{{{}}} 1\n", labels.join(","));
    assert!(matches!(
        parse(line.as_bytes()),
        Err(ParseError::Line { .. })
    ));
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

proptest! {
    #[test]
    fn any_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse(&body);
    }

    #[test]
    fn near_miss_text_never_panics(body in "[a-z_{}=\",\\\\ 0-9.+\\-#\n\r\t]{0,200}") {
        let _ = parse(body.as_bytes());
    }

    #[test]
    fn written_samples_read_back(
        samples in proptest::collection::vec(
            ("[a-zA-Z_:][a-zA-Z0-9_:]{0,20}",
             proptest::collection::vec(("[a-zA-Z_][a-zA-Z0-9_]{0,10}", "\\PC{0,12}"), 0..4),
             -1e12f64..1e12f64),
            0..20)
    ) {
        let mut body = String::new();
        for (name, labels, value) in &samples {
            let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
            body.push_str(&format!("{name}{{{}}} {value}\n", l.join(",")));
        }
        let parsed = parse(body.as_bytes()).unwrap();
        prop_assert_eq!(parsed.len(), samples.len());
        for (p, (name, labels, value)) in parsed.iter().zip(&samples) {
            prop_assert_eq!(&p.name, name);
            prop_assert_eq!(&p.labels, labels);
            prop_assert_eq!(p.value, *value);
        }
    }
}
