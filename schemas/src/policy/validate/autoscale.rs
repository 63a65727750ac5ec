//! The checks of one app's `autoscale` block that serde cannot make: bounds,
//! a positive target, a non-zero step and durations greater than zero. Each
//! problem carries the path of the offending value, so it is shown at its
//! own line and column.

use crate::duration::Duration;
use crate::policy::Autoscale;
use crate::span::Seg;

/// Every problem of `a`, each with its path below the `autoscale` key and its message.
pub(super) fn problems(key: &str, a: &Autoscale) -> Vec<(Vec<Seg<'static>>, String)> {
    let mut out = Vec::new();
    let mut flag = |field: &'static str, message: String| {
        out.push((
            vec![Seg::Key("autoscale"), Seg::Key(field)],
            format!("apps.{key}.autoscale.{field}: {message}"),
        ));
    };
    if a.max == 0 {
        flag("max", "must be at least 1".into());
    }
    if a.min > a.max {
        flag(
            "min",
            format!(
                "min ({}) is greater than max ({}); min must not exceed max",
                a.min, a.max
            ),
        );
    }
    if !(a.target.is_finite() && a.target > 0.0) {
        flag(
            "target",
            format!("must be a positive number, got {}", a.target),
        );
    }
    if a.max_step == Some(0) {
        flag(
            "max_step",
            "must be at least 1 (leave it out for the default, 4)".into(),
        );
    }
    for (field, d) in [
        ("scale_up_cooldown", a.scale_up_cooldown),
        ("scale_down_cooldown", a.scale_down_cooldown),
        ("window", a.window),
    ] {
        if let Some(Err(e)) = d.map(Duration::check_in_file) {
            flag(field, e.to_string());
        }
    }
    out
}
