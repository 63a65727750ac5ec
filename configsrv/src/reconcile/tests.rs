//! The reconciler driven by hand: events in, actions and views out, on a
//! made-up clock (plain `Instant`s, no runtime).

#![allow(clippy::unwrap_used)]

use super::*;
use crate::state::{Agent, App, Networking, PortSpec, Task, TaskPhase};
use schemas::ServicePort;

const COALESCE: Duration = Duration::from_millis(100);

fn app(id: &str, port: u16, tasks: usize) -> App {
    App {
        id: id.parse().unwrap(),
        networking: Networking::Host,
        service_ports: vec![PortSpec {
            index: 0,
            service_port: ServicePort(port),
            container_port: None,
            transport: crate::state::Transport::Tcp,
        }],
        protocol: None,
        balance: None,
        vhost: vec![],
        health_checks: 0,
        tasks: (0..tasks)
            .map(|i| Task {
                id: format!("{}.{i}", &id[1..]).parse().unwrap(),
                host: "127.0.0.2".into(),
                ports: vec![31000 + i as u16],
                addresses: vec![],
                phase: TaskPhase::Running,
                healthy: true,
            })
            .collect(),
    }
}

fn read(apps: Vec<App>) -> Event {
    Event::Source(SourceEvent::MarathonApps(Ok((apps, vec![]))))
}

fn failed_read() -> Event {
    Event::Source(SourceEvent::MarathonApps(Err(SourceError::Http {
        origin: "http://127.0.0.1:8080".into(),
        message: "connection refused".into(),
    })))
}

fn policy_files(files: &[(&str, &str)]) -> Event {
    Event::Source(SourceEvent::Policies(PolicySet::from_files_lenient(
        files.iter().copied(),
    )))
}

const GOOD_POLICY: &str = "apiVersion: palisade/v1\nkind: Policy\napps:\n  /web:\n    protocol: http\n    allow:\n      - from: /edge\n";

fn published(actions: &[Action]) -> Vec<&Rendered> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Publish(r) => Some(&**r),
            _ => None,
        })
        .collect()
}

fn scheduled(actions: &[Action]) -> Option<Instant> {
    actions.iter().rev().find_map(|a| match a {
        Action::ScheduleRender(at) => Some(*at),
        _ => None,
    })
}

fn last_view(actions: &[Action]) -> Option<Arc<View>> {
    actions.iter().rev().find_map(|a| match a {
        Action::View(v) => Some(Arc::clone(v)),
        _ => None,
    })
}

fn stale(actions: &[Action], source: Source) -> Option<bool> {
    actions.iter().rev().find_map(|a| match a {
        Action::SetStale { source: s, stale } if *s == source => Some(*stale),
        _ => None,
    })
}

fn reconciler() -> Reconciler {
    Reconciler::new(PolicySet::default(), COALESCE, 7)
}

/// Runs the timer when due and reports a good publish; returns the render.
fn render_now(r: &mut Reconciler, now: Instant) -> Rendered {
    let at = r.render_due().expect("a render is due");
    let mut actions = r.on_timer(at.max(now));
    let Some(Action::Publish(rendered)) = actions
        .iter()
        .position(|a| matches!(a, Action::Publish(_)))
        .map(|i| actions.swap_remove(i))
    else {
        panic!("no publish in {actions:?}");
    };
    let nodes = rendered.nodes.len();
    r.on_event(
        Event::Published {
            nodes,
            result: Ok(()),
        },
        at,
    );
    *rendered
}

#[test]
fn nothing_renders_before_the_first_good_read_and_the_first_good_read_renders() {
    let t0 = Instant::now();
    let mut r = reconciler();
    let agents = vec![Agent {
        hostname: "127.0.0.2".into(),
        address: None,
        active: true,
    }];
    let actions = r.on_event(Event::Source(SourceEvent::MesosAgents(Ok(agents))), t0);
    assert_eq!(scheduled(&actions), Some(t0));
    assert!(
        published(&r.on_timer(t0 + COALESCE)).is_empty(),
        "no good Marathon read yet"
    );
    assert!(published(&r.on_event(failed_read(), t0)).is_empty());
    assert_eq!(r.render_due(), None);

    let t1 = t0 + Duration::from_secs(1);
    let actions = r.on_event(read(vec![app("/web", 10000, 2)]), t1);
    assert_eq!(stale(&actions, Source::Marathon), Some(false));
    assert_eq!(
        scheduled(&actions),
        Some(t1),
        "nothing rendered yet: at once"
    );
    let rendered = render_now(&mut r, t1);
    let node = rendered.configs().into_values().next().unwrap();
    assert_eq!(node.services.len(), 1);
    assert_eq!(node.services[0].backends.len(), 2);
    assert_eq!(r.view().status.renders, 1);
}

#[test]
fn a_first_read_of_an_empty_cluster_still_renders_the_nodes() {
    let t0 = Instant::now();
    let mut r = reconciler();
    let actions = r.on_event(read(vec![]), t0);
    assert_eq!(scheduled(&actions), Some(t0));
}

#[test]
fn an_empty_read_after_a_non_empty_one_is_refused_and_marked_stale() {
    let t0 = Instant::now();
    let mut r = reconciler();
    r.on_event(read(vec![app("/web", 10000, 1)]), t0);
    render_now(&mut r, t0);

    for n in 1..crate::state::CONFIRM_EMPTY {
        let actions = r.on_event(read(vec![]), t0);
        assert_eq!(stale(&actions, Source::Marathon), Some(true), "read {n}");
        assert_eq!(scheduled(&actions), None, "read {n}: nothing to render");
        let view = last_view(&actions).unwrap();
        let marathon = &view.status.sources[&Source::Marathon];
        assert!(marathon.stale);
        assert!(marathon.error.as_deref().unwrap().contains("no apps"));
        assert_eq!(view.status.apps, 1, "the last good state stays");
        assert_eq!(view.apps[0].id.as_str(), "/web");
    }
    // Confirmed by enough reads in a row: the cluster really is empty.
    let actions = r.on_event(read(vec![]), t0);
    assert_eq!(stale(&actions, Source::Marathon), Some(false));
    assert!(scheduled(&actions).is_some());
    assert_eq!(r.view().status.apps, 0);
}

#[test]
fn a_failed_read_keeps_the_state_and_marks_marathon_stale() {
    let t0 = Instant::now();
    let mut r = reconciler();
    r.on_event(read(vec![app("/web", 10000, 1)]), t0);
    render_now(&mut r, t0);
    let actions = r.on_event(failed_read(), t0);
    assert_eq!(stale(&actions, Source::Marathon), Some(true));
    assert_eq!(scheduled(&actions), None);
    let status = serde_json::to_value(&r.view().status).unwrap();
    assert_eq!(status["sources"]["marathon"]["stale"], true);
    assert!(status["sources"]["marathon"]["error"]
        .as_str()
        .unwrap()
        .contains("connection refused"));
    assert_eq!(status["apps"], 1);
    for key in [
        "agents",
        "nodes",
        "renders",
        "policy_commit",
        "publish_error",
    ] {
        assert!(status.get(key).is_some(), "{key} in {status}");
    }
}

#[test]
fn a_change_after_a_quiet_spell_renders_at_once_and_a_burst_after_it_once_more() {
    let t0 = Instant::now();
    let mut r = reconciler();
    r.on_event(read(vec![app("/web", 10000, 1)]), t0);
    render_now(&mut r, t0);
    let t1 = t0 + Duration::from_secs(1);
    r.on_event(read(vec![app("/web", 10000, 2)]), t1);
    assert_eq!(
        r.render_due(),
        Some(t1),
        "the leading edge waits for nothing"
    );
    assert_eq!(published(&r.on_timer(t1)).len(), 1);
    for i in 0..10u32 {
        let now = t1 + Duration::from_millis(u64::from(i) * 5);
        r.on_event(read(vec![app("/web", 10000, 3 + i as usize)]), now);
        assert_eq!(
            r.render_due(),
            Some(t1 + COALESCE),
            "the rest of the burst waits for the window to close"
        );
        assert!(published(&r.on_timer(now)).is_empty());
    }
    let actions = r.on_timer(t1 + COALESCE);
    let renders = published(&actions);
    assert_eq!(renders.len(), 1);
    let node = renders[0].configs().into_values().next().unwrap();
    assert_eq!(node.services[0].backends.len(), 12, "the last read wins");
    assert_eq!(r.render_due(), None);
    assert!(published(&r.on_timer(t1 + COALESCE * 2)).is_empty());
}

#[test]
fn a_deployment_of_100_apps_in_a_burst_renders_a_handful_of_times() {
    // 100 apps, one change every 2 ms (200 ms in all), the timer served
    // whenever a render is due, as `serve`'s loop does.
    let t0 = Instant::now();
    let mut r = reconciler();
    r.on_event(read(vec![app("/web", 10000, 1)]), t0);
    render_now(&mut r, t0);
    let t1 = t0 + Duration::from_secs(1);
    let mut apps = vec![app("/web", 10000, 1)];
    let mut renders = 0;
    let mut last = None;
    for i in 0..100u16 {
        let now = t1 + Duration::from_millis(u64::from(i) * 2);
        if let Some(at) = r.render_due().filter(|at| *at <= now) {
            renders += published(&r.on_timer(at)).len();
        }
        apps.push(app(&format!("/deploy/app{i}"), 20000 + i, 1));
        r.on_event(read(apps.clone()), now);
        last = Some(now);
    }
    let at = r.render_due().expect("the end of the burst renders");
    assert!(at <= last.unwrap() + COALESCE);
    let actions = r.on_timer(at);
    let rendered = published(&actions);
    renders += rendered.len();
    assert_eq!(
        rendered[0]
            .configs()
            .into_values()
            .next()
            .unwrap()
            .services
            .len(),
        101
    );
    // One at the first change, one per window after it.
    assert!((2..=4).contains(&renders), "{renders} renders for 100 apps");
    assert_eq!(r.view().status.renders, 1 + renders as u64);
}

#[test]
fn an_event_that_changes_nothing_renders_nothing() {
    let t0 = Instant::now();
    let mut r = reconciler();
    r.on_event(read(vec![app("/web", 10000, 1)]), t0);
    render_now(&mut r, t0);
    let actions = r.on_event(read(vec![app("/web", 10000, 1)]), t0);
    assert_eq!(scheduled(&actions), None);
}

#[test]
fn a_failed_publish_is_retried_with_growing_backoff_until_it_succeeds() {
    let t0 = Instant::now();
    let mut r = reconciler();
    r.on_event(read(vec![app("/web", 10000, 1)]), t0);
    let mut now = t0 + COALESCE;
    let mut waits = Vec::new();
    for _ in 0..4 {
        assert_eq!(published(&r.on_timer(now)).len(), 1);
        let failed = Event::Published {
            nodes: 1,
            result: Err("publishing to /out: disk full".into()),
        };
        let actions = r.on_event(failed, now);
        assert!(actions
            .iter()
            .any(|a| matches!(a, Action::CountPublishFailure)));
        let at = scheduled(&actions).expect("a retry is scheduled, change or not");
        let view = last_view(&actions).unwrap();
        assert_eq!(
            view.status.publish_error.as_deref(),
            Some("publishing to /out: disk full")
        );
        waits.push(at - now);
        now = at;
    }
    // Doubling from 250ms, with up to half taken off by jitter.
    for (i, wait) in waits.iter().enumerate() {
        let full = RETRY_MIN * 2u32.pow(i as u32);
        assert!(*wait <= full && *wait >= full / 2, "retry {i}: {wait:?}");
    }
    assert_eq!(published(&r.on_timer(now)).len(), 1);
    let actions = r.on_event(
        Event::Published {
            nodes: 1,
            result: Ok(()),
        },
        now,
    );
    assert_eq!(scheduled(&actions), None);
    assert_eq!(last_view(&actions).unwrap().status.publish_error, None);
    // A success resets the backoff.
    r.on_event(read(vec![app("/web", 10000, 3)]), now);
    let at = r.render_due().unwrap();
    r.on_timer(at);
    let failed = Event::Published {
        nodes: 1,
        result: Err("again".into()),
    };
    let retry = scheduled(&r.on_event(failed, at)).unwrap();
    assert!(retry - at <= RETRY_MIN);
}

#[test]
fn a_change_brings_a_distant_retry_forward() {
    let t0 = Instant::now();
    let mut r = reconciler();
    r.on_event(read(vec![app("/web", 10000, 1)]), t0);
    let mut now = t0 + COALESCE;
    // Fail until the retry is further off than the coalesce delay.
    let retry = loop {
        r.on_timer(now);
        let failed = Event::Published {
            nodes: 0,
            result: Err("disk full".into()),
        };
        let at = scheduled(&r.on_event(failed, now)).unwrap();
        if at - now > COALESCE * 2 {
            break at;
        }
        now = at;
    };
    let actions = r.on_event(read(vec![app("/web", 10000, 2)]), now);
    assert_eq!(scheduled(&actions), Some(now + COALESCE));
    assert!(now + COALESCE < retry);
}

mod policy_and_view;
