//! A real browser through ferricorn: headless Chromium (Debian's `chromium` and
//! `chromium-driver`, installed by `tests/run-all.sh`), driven over WebDriver with
//! fantoccini, opens the Django admin, checks that admin's base.css really applied
//! (computed styles, not just a 200), logs in and lands on the admin index, over
//! plain HTTP/1.1 and over TLS with HTTP/2 (and with HTTP/2 turned off).
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
    for tool in [CHROMIUM, CHROMEDRIVER] {
        assert!(
            Path::new(tool).exists(),
            "{tool} is missing: run `bash tests/run-all.sh` (it installs chromium and chromium-driver)"
        );
    }
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

    let driver = Driver::start();
    let profile = tmp.path().join("chromium-profile");
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
    let caps = caps.as_object().unwrap().clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let result = rt.block_on(async {
        let browser = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", driver.port))
            .await
            .expect("WebDriver session");
        let outcome = drive(&browser, &base, way).await;
        let _ = browser.close().await;
        outcome
    });
    if let Err(e) = result {
        server.fail(&format!("browser ({way:?}): {e}"));
    }
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
