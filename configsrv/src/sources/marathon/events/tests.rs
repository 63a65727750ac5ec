//! Framing over the recorded streams in any chunking, the event payloads, and the size limits.

use super::*;
use std::path::PathBuf;

fn fixture(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/marathon/events")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn frames(text: &str, chunk: usize) -> Vec<Frame> {
    let mut p = SseParser::default();
    text.as_bytes()
        .chunks(chunk)
        .flat_map(|c| p.push(c).unwrap())
        .collect()
}

#[test]
fn a_line_or_an_event_over_the_limit_is_refused_not_buffered() {
    // One endless line: refused once it passes the limit, in any chunking.
    let mut p = SseParser::new(1024);
    let endless = vec![b'x'; 600];
    assert!(p.push(&endless).unwrap().is_empty());
    assert_eq!(p.push(&endless), Err(TooLarge { limit: 1024 }));
    assert!(p.pending.capacity() == 0, "nothing kept after the refusal");
    // Short lines that add up to one event over the limit.
    let mut p = SseParser::new(1024);
    let line = format!("data: {}\n", "y".repeat(300));
    assert!(p.push(line.repeat(3).as_bytes()).unwrap().is_empty());
    assert_eq!(p.push(line.as_bytes()), Err(TooLarge { limit: 1024 }));
    // Up to the limit, events pass and the count starts again after each.
    let mut p = SseParser::new(1024);
    let event = format!("data: {}\n\n", "z".repeat(1000));
    for _ in 0..3 {
        assert_eq!(p.push(event.as_bytes()).unwrap().len(), 1);
    }
}

#[test]
fn every_stream_fixture_frames_the_same_in_any_chunking() {
    for (file, expected) in [
        ("events-stream.txt", 5),
        ("events-stream-filtered.txt", 2),
        ("events-stream-deployment-light.txt", 3),
        ("events-stream-blank-lines.txt", 0),
        ("events-stream-doc-example.txt", 0),
    ] {
        let text = fixture(file);
        let whole = frames(&text, usize::MAX);
        if expected > 0 {
            assert_eq!(whole.len(), expected, "{file}");
        } else {
            assert!(!whole.is_empty(), "{file}");
        }
        for chunk in [1, 7, 64] {
            assert_eq!(frames(&text, chunk), whole, "{file} in chunks of {chunk}");
        }
        for f in &whole {
            let e = parse_event(&f.data).unwrap_or_else(|e| panic!("{file}: {e}"));
            if let Some(name) = &f.event {
                let kind = serde_json::from_str::<Value>(&f.data).unwrap()["eventType"].clone();
                assert_eq!(kind.as_str(), Some(name.as_str()), "{file}: {e:?}");
            }
        }
    }
}

#[test]
fn task_status_events_carry_what_the_fast_path_needs() {
    for (file, status) in [
        ("status_update_event-TASK_KILLING.json", "TASK_KILLING"),
        ("status_update_event-TASK_KILLED.json", "TASK_KILLED"),
        ("status_update_event-TASK_FAILED.json", "TASK_FAILED"),
        ("status_update_event-TASK_RUNNING.json", "TASK_RUNNING"),
    ] {
        match parse_event(&fixture(file)).unwrap() {
            Event::TaskStatus(t) => {
                assert_eq!(t.task_status, status, "{file}");
                assert!(
                    !t.task_id.is_empty() && t.app_id.starts_with('/'),
                    "{file}: {t:?}"
                );
            }
            other => panic!("{file}: {other:?}"),
        }
    }
}

#[test]
fn health_and_definition_events_are_recognised() {
    assert_eq!(
        parse_event(&fixture("health_status_changed_event.json")).unwrap(),
        Event::Health {
            app: "/my-app".into(),
            instance: "my-app.instance-c7c311a4-b669-11e6-a48f-0ea4f4b1778c".into(),
            alive: true
        }
    );
    assert!(matches!(
        parse_event(&fixture("instance_health_changed_event.json")).unwrap(),
        Event::Health { alive: true, .. }
    ));
    for f in [
        "api_post_event.json",
        "deployment_success.json",
        "deployment_step_success.json",
        "group_change_success.json",
        "deployment_success-heavy.json",
    ] {
        assert!(
            matches!(parse_event(&fixture(f)).unwrap(), Event::AppsChanged { .. }),
            "{f}"
        );
    }
    assert_eq!(
        parse_event(&fixture("event_stream_attached.json")).unwrap(),
        Event::Attached
    );
    assert!(parse_event("{not json").is_err());
}

#[test]
fn instance_ids_match_their_tasks_across_marathon_versions() {
    assert!(task_of_instance(
        "app.instance-c7c3._app.1",
        "app.instance-c7c3"
    ));
    assert!(task_of_instance(
        "some_app.49d976d3",
        "some_app.marathon-49d976d3"
    ));
    assert!(task_of_instance("app.49d9", "app.49d9"));
    assert!(!task_of_instance("app.instance-c7c31", "app.instance-c7c3"));
}
