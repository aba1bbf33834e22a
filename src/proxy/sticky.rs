//! Sticky sessions (`[[route]] sticky = true`, `--sticky PREFIX`): the requests of
//! one client under the route run on one worker, because some apps keep state in
//! the worker process (Flask-SocketIO's Engine.IO sessions: the long-polling GETs
//! and POSTs and the WebSocket upgrade of one session must reach the worker that
//! created it, which gunicorn cannot do, so its users run one worker).
//!
//! The front sets a cookie naming the worker that answered
//! (`ferricorn_worker=<WorkerId token>; Path=<prefix>; HttpOnly; SameSite=Lax`,
//! `Secure` over https); a request that brings it back is pinned to that worker
//! (`Dispatcher::acquire`'s `prefer`). The token is the worker's random name, so a
//! forged, stale (the worker was recycled, crashed or reloaded) or foreign one only
//! means "no preference": the request goes to the least busy worker, which the
//! answer's new cookie then names. The cookie is left in the request: the app may
//! see it, as behind nginx's sticky cookie.

use crate::dispatcher::WorkerId;
use crate::wire::Scheme;
use http::{header, HeaderMap, HeaderValue};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

/// The cookie's name.
pub(crate) const COOKIE_NAME: &str = "ferricorn_worker";

/// Bytes of a route's decoded prefix written %XX in the cookie's `Path`, so that
/// it reads as the path a browser sends (percent-encoded) and never ends the
/// attribute (`;`) or the field.
const PATH_ESCAPED: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b',')
    .add(b';')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'\\')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// A sticky route's cookie attributes, rendered once per route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StickyCookie {
    /// `; Path=/socket.io/; HttpOnly; SameSite=Lax`.
    attributes: &'static str,
}

impl StickyCookie {
    /// For a route's prefix in its normal form (decoded). Made once per process
    /// from the settings and leaked, so that `Overrides` stays `Copy` and a sticky
    /// request costs no reference count.
    pub(crate) fn new(prefix: &str) -> Self {
        let path = utf8_percent_encode(prefix, PATH_ESCAPED);
        let attributes = format!("; Path={path}; HttpOnly; SameSite=Lax");
        StickyCookie {
            attributes: Box::leak(attributes.into_boxed_str()),
        }
    }

    /// The `Set-Cookie` value naming `worker`; `Secure` when the client's scheme
    /// (as the front decided it, a trusted proxy's word included) is https.
    fn set_cookie(self, worker: WorkerId, scheme: Scheme) -> HeaderValue {
        let secure = if scheme == Scheme::Https {
            "; Secure"
        } else {
            ""
        };
        let value = format!(
            "{COOKIE_NAME}={}{}{secure}",
            worker.token(),
            self.attributes
        );
        HeaderValue::try_from(value).expect("a token and escaped attributes are a valid field")
    }
}

/// One request's stickiness: decided from its head (`of`), asked of the dispatcher
/// (`prefer`), applied to its answer (`remember`). Every path to a worker (a plain
/// request, a WebSocket upgrade) takes these three steps.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Stickiness {
    /// The route's cookie, if the route is sticky.
    cookie: Option<StickyCookie>,
    prefer: Option<WorkerId>,
}

impl Stickiness {
    /// For a request under a route with `cookie` (`Overrides::sticky`); a cookie
    /// brought to a route that is not sticky is not read.
    pub(crate) fn of(cookie: Option<StickyCookie>, headers: &HeaderMap) -> Self {
        Stickiness {
            cookie,
            prefer: cookie.and_then(|_| preference(headers)),
        }
    }

    /// The worker to ask `Dispatcher::acquire` for.
    pub(crate) fn prefer(self) -> Option<WorkerId> {
        self.prefer
    }

    /// The answer of worker `answered`: see `remember`.
    pub(crate) fn remember(self, headers: &mut HeaderMap, answered: WorkerId, scheme: Scheme) {
        if let Some(cookie) = self.cookie {
            remember(headers, cookie, self.prefer, answered, scheme);
        }
    }
}

/// The worker the request's cookie names: the first `ferricorn_worker` crumb in
/// any `Cookie` field (HTTP/2 clients send one field per cookie) that is a
/// well-formed token. Browsers send the cookie of the longest matching path first,
/// so with nested sticky routes the innermost one's wins. Whether the worker still
/// serves is the dispatcher's to say.
pub(crate) fn preference(headers: &HeaderMap) -> Option<WorkerId> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|field| field.as_bytes().split(|&b| b == b';'))
        .filter_map(|crumb| {
            let (name, value) = crumb.split_at(crumb.iter().position(|&b| b == b'=')?);
            (name.trim_ascii() == COOKIE_NAME.as_bytes()).then(|| value[1..].trim_ascii())
        })
        .find_map(WorkerId::from_token)
}

/// After worker `answered` took a request of a sticky route: a cookie naming it,
/// unless the request's own cookie named it already (then the answer carries no
/// new one). Appended: the app's own `Set-Cookie` fields stay.
fn remember(
    headers: &mut HeaderMap,
    cookie: StickyCookie,
    prefer: Option<WorkerId>,
    answered: WorkerId,
    scheme: Scheme,
) {
    if prefer != Some(answered) {
        headers.append(header::SET_COOKIE, cookie.set_cookie(answered, scheme));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cookies(fields: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for f in fields {
            h.append(header::COOKIE, HeaderValue::from_str(f).unwrap());
        }
        h
    }

    #[test]
    fn the_cookie_names_the_worker_and_reads_back() {
        let id = WorkerId::random();
        let cookie = StickyCookie::new("/socket.io/");
        let mut h = HeaderMap::new();
        remember(&mut h, cookie, None, id, Scheme::Http);
        let set = h[header::SET_COOKIE].to_str().unwrap().to_string();
        assert_eq!(
            set,
            format!(
                "ferricorn_worker={}; Path=/socket.io/; HttpOnly; SameSite=Lax",
                id.token()
            )
        );
        // What a browser sends back.
        let crumb = set.split(';').next().unwrap();
        assert_eq!(preference(&cookies(&[crumb])), Some(id));
        let mut h = HeaderMap::new();
        remember(&mut h, cookie, None, id, Scheme::Https);
        assert!(h[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .ends_with("; SameSite=Lax; Secure"));
    }

    #[test]
    fn a_cookie_that_named_the_worker_gets_no_new_one_another_does() {
        let (a, b) = (WorkerId::random(), WorkerId::random());
        let cookie = StickyCookie::new("/");
        let mut h = HeaderMap::new();
        h.append(header::SET_COOKIE, HeaderValue::from_static("app=1"));
        remember(&mut h, cookie, Some(a), a, Scheme::Http);
        assert_eq!(h.get_all(header::SET_COOKIE).iter().count(), 1);
        // The named worker left: the one that answered is named instead.
        remember(&mut h, cookie, Some(a), b, Scheme::Http);
        let all: Vec<_> = h.get_all(header::SET_COOKIE).iter().collect();
        assert_eq!(all.len(), 2, "the app's cookie stays");
        assert!(all[1].to_str().unwrap().contains(&b.token()));
    }

    #[test]
    fn only_a_sticky_route_reads_the_cookie_and_sets_one() {
        let (a, b) = (WorkerId::random(), WorkerId::random());
        let brought = cookies(&[&format!("{COOKIE_NAME}={}", a.token())]);
        let off = Stickiness::of(None, &brought);
        assert_eq!(off.prefer(), None);
        let mut h = HeaderMap::new();
        off.remember(&mut h, b, Scheme::Http);
        assert!(h.is_empty());
        let on = Stickiness::of(Some(StickyCookie::new("/")), &brought);
        assert_eq!(on.prefer(), Some(a));
        on.remember(&mut h, a, Scheme::Http);
        assert!(h.is_empty(), "it named the worker that answered");
        on.remember(&mut h, b, Scheme::Http);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn the_first_well_formed_crumb_in_any_cookie_field_is_the_preference() {
        let (a, b) = (WorkerId::random(), WorkerId::random());
        let (ta, tb) = (a.token(), b.token());
        let name = COOKIE_NAME;
        assert_eq!(preference(&HeaderMap::new()), None);
        assert_eq!(preference(&cookies(&["x=1; y=2"])), None);
        assert_eq!(
            preference(&cookies(&[&format!("x=1;{name}={ta}")])),
            Some(a)
        );
        assert_eq!(
            preference(&cookies(&[&format!("x=1;  {name}={ta} ")])),
            Some(a)
        );
        // HTTP/2 crumbs, one per field.
        assert_eq!(
            preference(&cookies(&["x=1", &format!("{name}={tb}")])),
            Some(b)
        );
        // Nested routes: the first sent wins; a malformed one is skipped.
        let both = format!("{name}={ta}; {name}={tb}");
        assert_eq!(preference(&cookies(&[&both])), Some(a));
        let junk_first = format!("{name}=zz; {name}={tb}");
        assert_eq!(preference(&cookies(&[&junk_first])), Some(b));
        // Respellings of the name or value name nothing.
        for bad in [
            format!("Ferricorn_Worker={ta}"),
            format!("ferricorn_worker2={ta}"),
            format!("x{name}={ta}"),
            format!("{name}=\"{ta}\""),
            format!("{name}={}", ta.to_uppercase()),
            format!("{name}={ta}{ta}"),
            name.to_string(),
            format!("{name}="),
            format!("{name}: {ta}"),
        ] {
            assert_eq!(preference(&cookies(&[&bad])), None, "{bad:?}");
        }
    }

    #[test]
    fn the_path_is_the_prefix_as_a_browser_sends_it_and_never_ends_the_attribute() {
        let path = |p: &str| StickyCookie::new(p).attributes.to_string();
        assert_eq!(
            path("/socket.io"),
            "; Path=/socket.io; HttpOnly; SameSite=Lax"
        );
        assert!(path("/café/").starts_with("; Path=/caf%C3%A9/;"));
        assert!(path("/a;b c%d?e,f/").starts_with("; Path=/a%3Bb%20c%25d%3Fe%2Cf/;"));
        assert!(path("/a\r\nb/").starts_with("; Path=/a%0D%0Ab/;"));
    }
}
