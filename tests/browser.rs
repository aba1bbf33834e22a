//! A real browser through ferricorn: headless Chromium (Debian's `chromium` and
//! `chromium-driver`, installed by `tests/run-all.sh`), driven over WebDriver with
//! fantoccini, opens the Django admin, checks that admin's base.css really applied
//! (computed styles, not just a 200), logs in and lands on the admin index, over
//! plain HTTP/1.1 and over TLS with HTTP/2 (and with HTTP/2 turned off); and a page
//! of the Flask-Sock echo (tests/apps/ws_echo.py) opens a WebSocket to the app and
//! shows the echo, over HTTP/1.1 and over TLS with HTTP/2, where Chromium opens it as
//! an RFC 8441 stream on the page's connection.
//! A missing Chromium is a failure, never a skip: CI must not pass without it.

mod common;

use common::*;
use fantoccini::{ClientBuilder, Locator};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const DEADLINE: Duration = Duration::from_secs(60);

/// chromedriver on a free port; killed (with the browser it started) on drop.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start() -> Driver {
        // Port 0 cannot be passed to chromedriver: take a free port and release it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let driver = Driver { child, port };
        // Ready when its /status says so.
        let deadline = Instant::now() + DEADLINE;
        let c = client();
        loop {
            let ready = c
                .get(format!("http://127.0.0.1:{port}/status"))
                .send()
                .ok()
                .and_then(|r| r.json::<serde_json::Value>().ok())
                .is_some_and(|v| v["value"]["ready"] == true);
            if ready {
                return driver;
            }
            assert!(Instant::now() < deadline, "chromedriver not ready");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How Chromium reaches ferricorn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    /// Plain HTTP/1.1.
    Http1,
    /// TLS (`--certfile`/`--keyfile`), ALPN picks HTTP/2 as for any HTTPS site.
    TlsHttp2,
    /// TLS with HTTP/2 turned off in Chromium.
    TlsHttp1,
}

impl Way {
    /// What `nextHopProtocol` says for the pages.
    fn protocol(self) -> &'static str {
        match self {
            Way::TlsHttp2 => "h2",
            Way::Http1 | Way::TlsHttp1 => "http/1.1",
        }
    }
}

#[test]
fn django_admin_in_headless_chromium() {
    django_admin_in(Way::Http1);
}

/// Over HTTP/2 Chromium splits the cookie into crumbs (RFC 9113 §8.2.3): the session
/// and CSRF cookies reach Django as one Cookie, so the login lands on the admin index.
#[test]
fn django_admin_in_headless_chromium_over_tls_and_http2() {
    django_admin_in(Way::TlsHttp2);
}

#[test]
fn django_admin_in_headless_chromium_over_tls_and_http1() {
    django_admin_in(Way::TlsHttp1);
}

fn django_admin_in(way: Way) {
    let site = DjangoSite::prepare();
    let tmp = &site.tmp;
    let (cert, key) = certificate(tmp.path());
    let server = match way {
        Way::Http1 => site.serve(),
        Way::TlsHttp2 | Way::TlsHttp1 => {
            site.serve_with(&["-w", "2", "--certfile", &cert, "--keyfile", &key])
        }
    };
    let base = match way {
        Way::Http1 => format!("http://{}", server.addr),
        Way::TlsHttp2 | Way::TlsHttp1 => format!("https://{}", server.addr),
    };

    let profile = tmp.path().join("chromium-profile");
    let result = in_chromium(way, &profile, async |browser| {
        drive(browser, &base, way).await
    });
    if let Err(e) = result {
        server.fail(&format!("browser ({way:?}): {e}"));
    }
}

/// Runs `visit` in a new headless Chromium (its own chromedriver, its profile in
/// `profile`) reaching the server `way`; the WebDriver session is closed either way.
/// A missing Chromium is a failure, never a skip.
fn in_chromium(
    way: Way,
    profile: &Path,
    visit: impl AsyncFnOnce(&fantoccini::Client) -> Result<(), String>,
) -> Result<(), String> {
    for tool in [CHROMIUM, CHROMEDRIVER] {
        assert!(
            Path::new(tool).exists(),
            "{tool} is missing: run `bash tests/run-all.sh` (it installs chromium and chromium-driver)"
        );
    }
    let driver = Driver::start();
    let caps = capabilities(way, profile);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let browser = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", driver.port))
            .await
            .expect("WebDriver session");
        let outcome = visit(&browser).await;
        let _ = browser.close().await;
        outcome
    })
}

/// The WebDriver capabilities of a headless Chromium reaching the server `way`.
fn capabilities(way: Way, profile: &Path) -> serde_json::Map<String, serde_json::Value> {
    // The flags that make Chromium work as root on a machine without outside network.
    let mut args = vec![
        "--headless".to_string(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-quic".into(),
        "--no-first-run".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--disable-dev-shm-usage".into(),
        format!("--user-data-dir={}", profile.display()),
    ];
    if way != Way::Http1 {
        // The test's certificate is self-signed.
        args.push("--ignore-certificate-errors".into());
    }
    if way == Way::TlsHttp1 {
        args.push("--disable-http2".into());
    }
    let caps = serde_json::json!({
        "goog:chromeOptions": { "binary": CHROMIUM, "args": args }
    });
    caps.as_object().unwrap().clone()
}

async fn drive(browser: &fantoccini::Client, base: &str, way: Way) -> Result<(), String> {
    let err = |e: fantoccini::error::CmdError| e.to_string();
    browser
        .goto(&format!("{base}/admin/login/?next=/admin/"))
        .await
        .map_err(err)?;
    let protocol = browser
        .execute(
            "return performance.getEntriesByType('navigation')[0].nextHopProtocol",
            vec![],
        )
        .await
        .map_err(err)?;
    if protocol != way.protocol() {
        return Err(format!("the login page came over {protocol}"));
    }
    // The stylesheet applied: #header { background: var(--header-bg) } = #417690 in
    // base.css; unstyled it would be transparent.
    let bg = browser
        .execute(
            "return getComputedStyle(document.getElementById('header')).backgroundColor",
            vec![],
        )
        .await
        .map_err(err)?;
    if bg != "rgb(65, 118, 144)" {
        return Err(format!(
            "admin base.css not applied: #header background {bg}"
        ));
    }
    let font = browser
        .execute("return getComputedStyle(document.body).fontFamily", vec![])
        .await
        .map_err(err)?;
    if !font.as_str().unwrap_or_default().contains("Segoe UI") {
        return Err(format!("admin base.css not applied: body font {font}"));
    }

    browser
        .find(Locator::Id("id_username"))
        .await
        .map_err(err)?
        .send_keys("admin")
        .await
        .map_err(err)?;
    browser
        .find(Locator::Id("id_password"))
        .await
        .map_err(err)?
        .send_keys(DJANGO_ADMIN_PASSWORD)
        .await
        .map_err(err)?;
    // Marks the login page, to tell when the page after the POST has loaded.
    browser
        .execute("window.ferricornLoginPage = true", vec![])
        .await
        .map_err(err)?;
    browser
        .find(Locator::Css("input[type=submit]"))
        .await
        .map_err(err)?
        .click()
        .await
        .map_err(err)?;
    let (path, h1) = page_after_login(browser).await?;
    // Logged out (the session cookie did not reach Django), /admin/ sends the
    // browser back to the login page.
    if path != "/admin/" || !h1.contains("Site administration") {
        return Err(format!(
            "after login the browser is on {path} ({h1:?}), not the admin index"
        ));
    }
    Ok(())
}

/// The path and first heading of the page the login POST led to, once it loaded.
async fn page_after_login(browser: &fantoccini::Client) -> Result<(String, String), String> {
    const PROBE: &str = "if (window.ferricornLoginPage || document.readyState !== 'complete') \
        return null; \
        const h1 = document.querySelector('h1'); \
        return [location.pathname, h1 ? h1.textContent : ''];";
    let deadline = Instant::now() + DEADLINE;
    loop {
        // A navigation under way may fail a script: try again.
        if let Ok(serde_json::Value::Array(v)) = browser.execute(PROBE, vec![]).await {
            let text = |i: usize| v.get(i).and_then(|x| x.as_str()).unwrap_or("").to_string();
            return Ok((text(0), text(1)));
        }
        if Instant::now() > deadline {
            return Err("the page after the login POST never loaded".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn websocket_echo_in_headless_chromium() {
    websocket_echo_in(Way::Http1);
}

/// On an h2 connection whose SETTINGS offer extended CONNECT, Chromium opens the
/// WebSocket as an RFC 8441 stream: the access log says HTTP/2 and 200.
#[test]
fn websocket_echo_in_headless_chromium_over_tls_and_http2() {
    websocket_echo_in(Way::TlsHttp2);
}

fn websocket_echo_in(way: Way) {
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(tmp.path());
    let mut args = vec!["-w", "1", "--threads", "8"];
    args.extend(["--access-logfile", "-", "--access-log-format", "json"]);
    if way != Way::Http1 {
        args.extend(["--certfile", &cert, "--keyfile", &key]);
    }
    let server = test_app("ws_echo:app", &args).start();
    let scheme = if way == Way::Http1 { "http" } else { "https" };
    let base = format!("{scheme}://{}", server.addr);
    let profile = tmp.path().join("chromium-profile");
    let result = in_chromium(way, &profile, async |browser| {
        echo_page(browser, &base, way).await
    });
    if let Err(e) = result {
        server.fail(&format!("browser ({way:?}): {e}"));
    }
    // The page closed its WebSocket after the echo: its access-log line is written.
    let line = server.wait_for_log("\"/echo\"", DEADLINE);
    let entry: serde_json::Value =
        serde_json::from_str(line.trim()).unwrap_or_else(|e| server.fail(&format!("{e}: {line}")));
    println!("{way:?}: {line}");
    let (status, protocol) = match way {
        Way::Http1 | Way::TlsHttp1 => (101, "HTTP/1.1"),
        Way::TlsHttp2 => (200, "HTTP/2"),
    };
    if entry["status"] != status
        || !entry["protocol"]
            .as_str()
            .unwrap_or("")
            .starts_with(protocol)
    {
        server.fail(&format!("the WebSocket's log line: {line}"));
    }
}

/// Loads the echo page and waits for its script to show the echoed text.
async fn echo_page(browser: &fantoccini::Client, base: &str, way: Way) -> Result<(), String> {
    let err = |e: fantoccini::error::CmdError| e.to_string();
    browser.goto(&format!("{base}/")).await.map_err(err)?;
    let protocol = browser
        .execute(
            "return performance.getEntriesByType('navigation')[0].nextHopProtocol",
            vec![],
        )
        .await
        .map_err(err)?;
    if protocol != way.protocol() {
        return Err(format!("the page came over {protocol}"));
    }
    let deadline = Instant::now() + DEADLINE;
    loop {
        let state = browser
            .execute(
                "return document.getElementById('state').textContent",
                vec![],
            )
            .await
            .map_err(err)?;
        match state.as_str().unwrap_or("") {
            "echoed" => break,
            "connecting" | "open" if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            other => return Err(format!("the page's WebSocket: {other}")),
        }
    }
    let echo = browser
        .execute("return document.getElementById('echo').textContent", vec![])
        .await
        .map_err(err)?;
    if echo != "hello through ferricorn \u{e9}\u{2603}" {
        return Err(format!("the page shows {echo}"));
    }
    Ok(())
}
