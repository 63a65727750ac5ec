#![allow(clippy::unwrap_used)]
use super::*;

const DEF: &str = r#"{"id": "/palisade/meshd", "cmd": "meshd run", "instances": 1}"#;

fn app() -> MeshdApp {
    parse("meshd.json", DEF).unwrap()
}

fn agents(now: Option<usize>, before: Option<usize>) -> Agents {
    Agents { now, before }
}

fn current(instances: u64, unique: bool) -> Option<Current> {
    Some(Current { instances, unique })
}

#[test]
fn the_unique_hostname_constraint_is_added_once() {
    let a = app();
    assert_eq!(a.id, "/palisade/meshd");
    assert_eq!(a.definition["constraints"], json!([["hostname", "UNIQUE"]]));
    let b = parse(
        "m.json",
        r#"{"id": "meshd", "cmd": "x", "constraints": [["rack", "GROUP_BY"], ["hostname", "unique"]]}"#,
    )
    .unwrap();
    assert_eq!(b.id, "/meshd");
    assert_eq!(
        b.definition["constraints"],
        json!([["rack", "GROUP_BY"], ["hostname", "unique"]])
    );
}

#[test]
fn bad_definitions_name_the_file_and_the_field() {
    let cases = [
        ("{\"id\": ", "m.json:1:"),
        ("[]", "m.json: field `(top level)`"),
        (r#"{"cmd": "x"}"#, "m.json: field `id`"),
        (r#"{"id": "/Mesh d", "cmd": "x"}"#, "m.json: field `id`"),
        (r#"{"id": "/m"}"#, "m.json: field `cmd`"),
        (
            r#"{"id": "/m", "cmd": "x", "networks": [{"mode": "container/bridge"}]}"#,
            "m.json: field `networks`",
        ),
        (
            r#"{"id": "/m", "container": {"docker": {"image": "i", "network": "BRIDGE"}}}"#,
            "m.json: field `networks`",
        ),
        (
            r#"{"id": "/m", "cmd": "x", "constraints": "hostname:UNIQUE"}"#,
            "m.json: field `constraints`",
        ),
    ];
    for (text, want) in cases {
        let e = parse("m.json", text).unwrap_err().to_string();
        assert!(e.starts_with(want), "{text}: {e}");
    }
}

#[test]
fn a_missing_app_is_created_with_one_instance_per_active_agent() {
    let Step::Create(def) = decide(&app(), agents(Some(3), None), None) else {
        panic!("not a create");
    };
    assert_eq!(def["instances"], 3);
    assert_eq!(def["id"], "/palisade/meshd");
    assert_eq!(def["constraints"], json!([["hostname", "UNIQUE"]]));
}

#[test]
fn a_joining_agent_grows_the_app_at_once() {
    assert_eq!(
        decide(&app(), agents(Some(4), Some(3)), current(3, true)),
        Step::Update(json!({"instances": 4}))
    );
    assert_eq!(
        decide(&app(), agents(Some(3), Some(3)), current(3, true)),
        Step::Nothing
    );
}

#[test]
fn a_lost_constraint_is_put_back() {
    assert_eq!(
        decide(&app(), agents(Some(3), Some(3)), current(3, false)),
        Step::Update(json!({"instances": 3, "constraints": [["hostname", "UNIQUE"]]}))
    );
}

#[test]
fn a_stale_or_empty_agent_list_never_shrinks_or_creates() {
    for a in [
        agents(None, Some(3)),
        agents(Some(0), Some(3)),
        agents(Some(0), Some(0)),
    ] {
        assert!(
            matches!(decide(&app(), a, current(3, true)), Step::Hold(_)),
            "{a:?}"
        );
        assert!(matches!(decide(&app(), a, None), Step::Hold(_)), "{a:?}");
    }
}

#[test]
fn shrinking_waits_for_a_second_read_that_agrees() {
    assert!(matches!(
        decide(&app(), agents(Some(2), Some(3)), current(3, true)),
        Step::Hold(_)
    ));
    assert_eq!(
        decide(&app(), agents(Some(2), Some(2)), current(3, true)),
        Step::Update(json!({"instances": 2}))
    );
}

#[test]
fn marathon_answers_are_read() {
    let body =
        json!({"app": {"id": "/m", "instances": 2, "constraints": [["hostname", "UNIQUE"]]}});
    assert_eq!(Current::from_answer(&body), current(2, true));
    let body = json!({"app": {"id": "/m", "instances": 2, "constraints": []}});
    assert_eq!(Current::from_answer(&body), current(2, false));
    assert_eq!(Current::from_answer(&json!({"message": "x"})), None);
}
