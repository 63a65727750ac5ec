//! The reconciler's policy handling, its view, and node followers.

use super::*;

#[test]
fn an_invalid_policy_keeps_the_last_good_one_and_marks_policy_stale() {
    let t0 = Instant::now();
    let mut r = reconciler();
    r.on_event(read(vec![app("/web", 10000, 1)]), t0);
    render_now(&mut r, t0);
    let actions = r.on_event(policy_files(&[("web.yaml", GOOD_POLICY)]), t0);
    assert_eq!(stale(&actions, Source::Policy), Some(false));
    assert!(scheduled(&actions).is_some());
    let good = render_now(&mut r, t0);
    let access = |rendered: &Rendered| {
        let node = rendered.configs().into_values().next().unwrap();
        format!("{:?}", node.services[0].access)
    };

    // A file whose format is broken: the whole last good policy stays.
    let broken = "apiVersion: palisade/v1\nkind: Policy\napps: [\n";
    let actions = r.on_event(policy_files(&[("web.yaml", broken)]), t0);
    assert_eq!(stale(&actions, Source::Policy), Some(true));
    assert_eq!(scheduled(&actions), None);
    let view = last_view(&actions).unwrap();
    assert!(view.status.sources[&Source::Policy].stale);
    assert!(view.policy.problems[0].starts_with("web.yaml:"));
    assert_eq!(view.policy.set.apps.len(), 1);

    // An invalid entry keeps its last good settings; a new valid one joins.
    let typo = "apiVersion: palisade/v1\nkind: Policy\napps:\n  /web:\n    protocol: htttp\n  /db:\n    protocol: tcp\n";
    let actions = r.on_event(policy_files(&[("web.yaml", typo)]), t0);
    assert_eq!(stale(&actions, Source::Policy), Some(true));
    let view = last_view(&actions).unwrap();
    assert!(view.policy.broken_apps.contains("/web"));
    assert_eq!(view.policy.set.apps.len(), 2);
    assert!(
        view.app_errors["/web"][0].starts_with("web.yaml:5:5: "),
        "{view:?}"
    );
    let after = render_now(&mut r, t0);
    assert_eq!(access(&after), access(&good), "/web keeps its allow-list");
    assert_eq!(r.view().apps[0].protocol, schemas::Protocol::Http);
}

#[test]
fn a_policy_commit_moves_the_commit_metric_and_shows_in_the_view() {
    let t0 = Instant::now();
    let start = PolicySet {
        commit: Some("aaa".into()),
        ..PolicySet::default()
    };
    let mut r = Reconciler::new(start, COALESCE, 1);
    let actions = r.start();
    assert!(
        matches!(&actions[0], Action::SetPolicyCommit { old: None, new: Some(c) } if c == "aaa")
    );
    assert_eq!(
        last_view(&actions).unwrap().status.policy_commit.as_deref(),
        Some("aaa")
    );
    let next = PolicySet {
        commit: Some("bbb".into()),
        ..PolicySet::default()
    };
    let actions = r.on_event(Event::Source(SourceEvent::PolicyCommit(Ok(next))), t0);
    assert!(actions.iter().any(|a| matches!(a,
        Action::SetPolicyCommit { old: Some(o), new: Some(n) } if o == "aaa" && n == "bbb")));
    assert_eq!(
        last_view(&actions).unwrap().policy.set.commit.as_deref(),
        Some("bbb")
    );
    let refused = Event::Source(SourceEvent::PolicyCommit(Err("ccc: bad file".into())));
    let actions = r.on_event(refused, t0);
    assert_eq!(stale(&actions, Source::Policy), Some(true));
    assert_eq!(r.view().status.policy_commit.as_deref(), Some("bbb"));
}

#[test]
fn the_view_lists_apps_with_instances_and_service_ports() {
    let t0 = Instant::now();
    let mut r = reconciler();
    let actions = r.on_event(read(vec![app("/web", 10000, 3), app("/db", 10001, 1)]), t0);
    let view = last_view(&actions).unwrap();
    let ids: Vec<_> = view.apps.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["/db", "/web"]);
    assert_eq!(view.apps[1].instances, 3);
    assert_eq!(view.apps[1].healthy, 3);
    assert_eq!(view.apps[1].service_ports, [10000]);
    assert_eq!(view.status.apps, 2);
    // Once rendered, nothing a reader sees changed: no new view.
    render_now(&mut r, t0);
    assert!(last_view(&r.on_timer(t0)).is_none());
}

#[test]
fn a_node_whose_meshd_follows_gets_a_config_and_keeps_it_across_reads() {
    let t0 = Instant::now();
    let mut r = reconciler();
    r.on_event(read(vec![app("/web", 10000, 1)]), t0);
    render_now(&mut r, t0);
    let follower: schemas::NodeName = "127.0.0.9".parse().unwrap();
    let event = Event::Source(SourceEvent::Followers(vec![follower.clone()]));
    assert!(scheduled(&r.on_event(event, t0)).is_some());
    assert!(render_now(&mut r, t0).nodes.contains_key(&follower));
    // A later full read of Marathon keeps the follower.
    r.on_event(read(vec![app("/web", 10000, 2)]), t0);
    assert!(render_now(&mut r, t0).nodes.contains_key(&follower));
}

#[test]
fn a_burst_of_task_events_shows_in_one_view_with_its_render() {
    use crate::sources::marathon::events::parse_event;
    let t0 = Instant::now();
    let mut r = reconciler();
    r.on_event(read(vec![app("/web", 10000, 1)]), t0);
    render_now(&mut r, t0);
    for i in 0..5 {
        let e = parse_event(&format!(
            r#"{{"eventType":"status_update_event","appId":"/web","taskId":"web.n{i}","taskStatus":"TASK_RUNNING","host":"127.0.0.2","ports":[31100],"ipAddresses":[]}}"#
        ))
        .unwrap();
        let actions = r.on_event(Event::Source(SourceEvent::MarathonEvent(e)), t0);
        assert!(last_view(&actions).is_none(), "event {i}");
    }
    let actions = r.on_timer(r.render_due().unwrap());
    assert_eq!(published(&actions).len(), 1);
    assert_eq!(last_view(&actions).unwrap().apps[0].instances, 6);
}
