//! Marathon as a source: the tolerant model of its JSON (`model`), its
//! event stream (`events`), the HTTP client (`rest`) and the follower that
//! keeps configsrv current (`follow`).

pub mod events;
pub mod follow;
pub mod model;
pub mod rest;

use crate::error::{AppError, SourceError};
use crate::state::App;

/// Reads a `GET /v2/apps?embed=apps.tasks` body (or a single-app `{"app": ...}`
/// body): the apps that can be used, and one error per app that cannot.
pub fn parse_apps(origin: &str, body: &[u8]) -> Result<(Vec<App>, Vec<AppError>), SourceError> {
    let apps = match serde_json::from_slice::<model::AppsResponse>(body) {
        Ok(r) => r.apps,
        Err(list_err) => match serde_json::from_slice::<model::AppResponse>(body) {
            Ok(r) => vec![r.app],
            Err(_) => return Err(SourceError::json(origin, &list_err)),
        },
    };
    let mut good = Vec::new();
    let mut errors = Vec::new();
    for app in apps {
        match app.into_app() {
            Ok(a) => good.push(a),
            Err(e) => errors.push(e),
        }
    }
    Ok((good, errors))
}
