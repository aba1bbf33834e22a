//! Static mounts (stub until the file layer lands).

use crate::config::{FileCache, StaticMount};
use crate::respond::{self, Body};
use http::{Response, StatusCode};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MountId(usize);

pub struct StaticFiles {
    mounts: Vec<StaticMount>,
}

impl StaticFiles {
    pub fn new(
        mounts: &[StaticMount],
        _cache: &FileCache,
        _dev_mode: bool,
    ) -> std::io::Result<Self> {
        Ok(StaticFiles {
            mounts: mounts.to_vec(),
        })
    }

    pub fn route(&self, path: &str) -> Option<MountId> {
        self.mounts
            .iter()
            .position(|m| path.starts_with(&m.url))
            .map(MountId)
    }

    pub fn falls_through(&self, id: MountId) -> bool {
        self.mounts[id.0].fallthrough
    }

    pub async fn serve(&self, _id: MountId, _req: &http::request::Parts) -> Response<Body> {
        respond::status_page(StatusCode::NOT_FOUND)
    }
}
