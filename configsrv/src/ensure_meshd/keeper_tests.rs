//! The keeper's own decisions: when a wake-up runs a check, and what
//! Marathon's refusals come to.

use super::*;
use serde_json::json;

#[test]
fn a_new_mesos_read_waits_for_a_pending_retry() {
    let now = tokio::time::Instant::now();
    let later = now + Duration::from_secs(30);
    assert!(due(false, 2, 1, None, now), "a new read, nothing pending");
    assert!(!due(false, 1, 1, None, now), "a read already acted on");
    assert!(!due(false, 3, 1, Some(later), now), "a retry pending");
    assert!(
        due(false, 3, 1, Some(now), now),
        "the retry's time has come"
    );
    assert!(due(true, 1, 1, Some(later), now), "the timer");
}

#[test]
fn marathon_refusals_map_to_outcomes_that_say_what_to_do() {
    let locked = json!({"message": "App is locked by one or more deployments."});
    let o = failure("PUT", "/v2/apps/m", Answer::Status(409, locked));
    assert!(
        matches!(&o, Outcome::Conflict(m) if m.contains("409") && m.contains("locked")),
        "{o:?}"
    );
    assert!(o.retry());
    for status in [401, 403] {
        let o = failure("POST", "/v2/apps", Answer::Status(status, json!({})));
        assert!(
            matches!(&o, Outcome::Unauthorized(m) if m.contains("--marathon-token-file")),
            "{o:?}"
        );
    }
    let invalid = json!({"message": "Object is not valid", "details": [{"path": "/cmd"}]});
    let o = failure("POST", "/v2/apps", Answer::Status(422, invalid));
    assert!(
        matches!(&o, Outcome::Rejected(m) if m.contains("/cmd")),
        "{o:?}"
    );
    let o = failure("GET", "/v2/apps/m", Answer::Status(503, json!(null)));
    assert_eq!(o.label(), "error");
    let o = failure(
        "GET",
        "/v2/apps/m",
        Answer::Failed("connection refused".into()),
    );
    assert!(
        matches!(&o, Outcome::Error(m) if m.contains("connection refused")),
        "{o:?}"
    );
    assert!(!Outcome::Held("x".into()).retry());
    assert!(!Outcome::Scaled(3).retry());
}
