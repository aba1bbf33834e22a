//! The router: a static mount that owns the path, else the app, else 404 (static-only
//! mode, when no app is configured). An `internal` mount owns its paths too, but a
//! client gets 404 there: only an app's `X-Accel-Redirect` reaches it. The path is the
//! request's normal form (`normal_path`), so no spelling reaches a mount, or misses
//! one, that the plain spelling would not.

use crate::normal_path::NormalPath;
use crate::static_files::{MountId, StaticFiles};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Static(MountId),
    App,
    NotFound,
}

pub fn route(statics: &StaticFiles, has_app: bool, path: &NormalPath) -> Route {
    match statics.route(path) {
        Some(id) if statics.is_internal(id) => Route::NotFound,
        Some(id) => Route::Static(id),
        None if has_app => Route::App,
        None => Route::NotFound,
    }
}
