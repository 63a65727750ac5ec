//! The decision's rules, each on hand-built inputs.

#![allow(clippy::unwrap_used)]
use super::*;
use schemas::policy::ScaleMetric;

fn policy() -> Autoscale {
    Autoscale {
        metric: ScaleMetric::RpsPerInstance,
        target: 100.0,
        min: 2,
        max: 10,
        scale_up_cooldown: Some(schemas::duration::Duration(Duration::from_secs(30))),
        scale_down_cooldown: Some(schemas::duration::Duration(Duration::from_secs(300))),
        max_step: Some(3),
        window: None,
        dry_run: false,
    }
}

fn inputs(p: &Autoscale, instances: u32, value: f64) -> Inputs<'_> {
    Inputs {
        policy: p,
        instances,
        measured: Ok(value),
        deploying: false,
        room: None,
        last_up: None,
        last_down: None,
        now: Instant::now() + Duration::from_secs(3600),
    }
}

#[test]
fn within_the_band_nothing_changes_and_a_hovering_figure_does_not_flap() {
    let p = policy();
    // 91..109 per instance with a target of 100: inside the 10% band.
    for v in [91.0, 95.0, 100.0, 104.0, 109.0] {
        let d = decide(&inputs(&p, 4, v));
        assert_eq!((d.outcome, d.to), (Outcome::WithinBand, 4), "{v}: {d:?}");
    }
    // Just outside the band, ceil keeps the count where the load still needs it.
    let d = decide(&inputs(&p, 4, 88.0));
    assert_eq!((d.outcome, d.to), (Outcome::WithinBand, 4), "{d:?}");
}

#[test]
fn scale_up_follows_the_load_up_to_max_step() {
    let p = policy();
    // 4 instances at 150 each = 600 rps: 6 instances at 100.
    let d = decide(&inputs(&p, 4, 150.0));
    assert_eq!((d.outcome, d.to), (Outcome::ScaledUp, 6), "{d:?}");
    assert_eq!(d.value, Some(150.0));
    assert!(d.reason.contains("4 -> 6"), "{}", d.reason);
    // 4 at 400 = 1600 rps wants 16 (then max 10); max_step 3 allows 7.
    let d = decide(&inputs(&p, 4, 400.0));
    assert_eq!((d.outcome, d.to), (Outcome::ScaledUp, 7), "{d:?}");
}

#[test]
fn min_and_max_clamp_the_count() {
    let p = policy();
    // At 9, a huge load stops at max 10.
    let d = decide(&inputs(&p, 9, 1000.0));
    assert_eq!((d.outcome, d.to), (Outcome::ScaledUp, 10));
    // At max, more load changes nothing.
    let d = decide(&inputs(&p, 10, 1000.0));
    assert_eq!((d.outcome, d.to), (Outcome::WithinBand, 10), "{d:?}");
    assert!(d.reason.ends_with("is the policy's max"), "{}", d.reason);
    // At min, no load changes nothing.
    let d = decide(&inputs(&p, 2, 0.0));
    assert_eq!((d.outcome, d.to), (Outcome::WithinBand, 2), "{d:?}");
    assert!(d.reason.ends_with("is the policy's min"), "{}", d.reason);
    // Below min: up to min, whatever the figure (stale too).
    let mut i = inputs(&p, 1, 0.0);
    i.measured = Err("node n1 has no fresh scrape".into());
    let d = decide(&i);
    assert_eq!((d.outcome, d.to), (Outcome::ScaledUp, 2), "{d:?}");
    // A suspended app (0 instances) stays suspended, whatever the load.
    let d = decide(&inputs(&p, 0, 500.0));
    assert_eq!((d.outcome, d.to), (Outcome::Suspended, 0), "{d:?}");
    // Above max: down, one step.
    let d = decide(&inputs(&p, 14, 50.0));
    assert_eq!((d.outcome, d.to), (Outcome::ScaledDown, 13), "{d:?}");
}

#[test]
fn scale_down_is_one_step_at_a_time() {
    let p = policy();
    // 8 instances with no load wants min 2, but goes to 7.
    let d = decide(&inputs(&p, 8, 0.0));
    assert_eq!((d.outcome, d.to), (Outcome::ScaledDown, 7), "{d:?}");
    assert!(d.reason.contains("8 -> 7"), "{}", d.reason);
}

#[test]
fn cooldowns_hold_changes_back_until_they_pass() {
    let p = policy();
    let mut i = inputs(&p, 4, 150.0);
    i.last_up = Some(i.now - Duration::from_secs(10));
    let d = decide(&i);
    assert_eq!((d.outcome, d.to), (Outcome::Cooldown, 4), "{d:?}");
    assert!(d.reason.contains("20 s left"), "{}", d.reason);
    i.last_up = Some(i.now - Duration::from_secs(31));
    assert_eq!(decide(&i).outcome, Outcome::ScaledUp);
    // A scale-down waits its cooldown after a scale-up and after a scale-down.
    let mut i = inputs(&p, 6, 10.0);
    i.last_up = Some(i.now - Duration::from_secs(100));
    assert_eq!(decide(&i).outcome, Outcome::Cooldown);
    i.last_up = None;
    i.last_down = Some(i.now - Duration::from_secs(299));
    assert_eq!(decide(&i).outcome, Outcome::Cooldown);
    i.last_down = Some(i.now - Duration::from_secs(301));
    assert_eq!(decide(&i).to, 5);
    // A recent scale-down does not hold back a scale-up.
    let mut i = inputs(&p, 4, 150.0);
    i.last_down = Some(i.now - Duration::from_secs(1));
    assert_eq!(decide(&i).outcome, Outcome::ScaledUp);
}

#[test]
fn stale_metrics_mean_no_action() {
    let p = policy();
    let mut i = inputs(&p, 4, 500.0);
    i.measured = Err("node 10.0.0.7 runs the app and has no fresh scrape".into());
    let d = decide(&i);
    assert_eq!((d.outcome, d.to, d.value), (Outcome::StaleMetrics, 4, None));
    assert!(d.reason.contains("10.0.0.7"), "{}", d.reason);
}

#[test]
fn a_deployment_in_progress_means_no_action() {
    let p = policy();
    let mut i = inputs(&p, 4, 500.0);
    i.deploying = true;
    let d = decide(&i);
    assert_eq!((d.outcome, d.to), (Outcome::Deployment, 4));
    // Even below min.
    i.instances = 1;
    assert_eq!(decide(&i).outcome, Outcome::Deployment);
}

#[test]
fn capacity_limits_a_scale_up_to_the_room_there_is() {
    let p = policy();
    let mut i = inputs(&p, 4, 150.0);
    i.room = Some(Room {
        fits: 1,
        cpus: 0.5,
        mem: 256.0,
    });
    let d = decide(&i);
    assert_eq!((d.outcome, d.to), (Outcome::ScaledUp, 5), "{d:?}");
    assert!(
        d.reason.contains("room for only 1 more of the 2"),
        "{}",
        d.reason
    );
    // Room for more than due: only what is due.
    i.room = Some(Room {
        fits: 50,
        cpus: 0.5,
        mem: 256.0,
    });
    assert_eq!(decide(&i).to, 6);
}

#[test]
fn no_room_is_a_capacity_refusal_naming_the_resources() {
    let p = policy();
    let mut i = inputs(&p, 4, 150.0);
    i.room = Some(Room {
        fits: 0,
        cpus: 2.0,
        mem: 4096.0,
    });
    let d = decide(&i);
    assert_eq!((d.outcome, d.to), (Outcome::Capacity, 4), "{d:?}");
    assert!(
        d.reason.contains("2 cpus") && d.reason.contains("4096 MiB"),
        "{}",
        d.reason
    );
    // Scaling down needs no room.
    let mut i = inputs(&p, 4, 10.0);
    i.room = Some(Room {
        fits: 0,
        cpus: 2.0,
        mem: 4096.0,
    });
    assert_eq!(decide(&i).outcome, Outcome::ScaledDown);
}

#[test]
fn dry_run_decides_the_same_and_says_marathon_was_not_asked() {
    let mut p = policy();
    p.dry_run = true;
    let d = decide(&inputs(&p, 4, 150.0));
    assert_eq!((d.outcome, d.to), (Outcome::DryRun, 6), "{d:?}");
    assert!(d.reason.starts_with("dry run"), "{}", d.reason);
    let d = decide(&inputs(&p, 4, 0.0));
    assert_eq!((d.outcome, d.to), (Outcome::DryRun, 3), "{d:?}");
    // Holds stay holds.
    let d = decide(&inputs(&p, 4, 100.0));
    assert_eq!(d.outcome, Outcome::WithinBand);
}

#[test]
fn every_outcome_has_its_label() {
    let all = [
        Outcome::ScaledUp,
        Outcome::ScaledDown,
        Outcome::Cooldown,
        Outcome::Deployment,
        Outcome::StaleMetrics,
        Outcome::Capacity,
        Outcome::DryRun,
        Outcome::WithinBand,
        Outcome::Error,
        Outcome::Suspended,
    ];
    for o in all {
        assert_eq!(serde_json::to_value(o).unwrap(), o.as_str());
    }
}
