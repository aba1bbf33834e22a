//! A real browser through ferricorn: headless Chromium (Debian's `chromium` and
//! `chromium-driver`, installed by `tests/run-all.sh`), driven over WebDriver with
//! fantoccini, opens the Django admin, checks that admin's base.css really applied
//! (computed styles, not just a 200), logs in and sees "Site administration".
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

#[test]
fn django_admin_in_headless_chromium() {
    for tool in [CHROMIUM, CHROMEDRIVER] {
        assert!(
            Path::new(tool).exists(),
            "{tool} is missing: run `bash tests/run-all.sh` (it installs chromium and chromium-driver)"
        );
    }
    let site = DjangoSite::prepare();
    let server = site.serve();
    let tmp = &site.tmp;

    let driver = Driver::start();
    let profile = tmp.path().join("chromium-profile");
    // The flags that make Chromium work as root on a machine without outside network.
    let caps = serde_json::json!({
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage",
                format!("--user-data-dir={}", profile.display()),
            ],
        }
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
        let outcome = drive(&browser, &server).await;
        let _ = browser.close().await;
        outcome
    });
    if let Err(e) = result {
        server.fail(&format!("browser: {e}"));
    }
}

async fn drive(browser: &fantoccini::Client, server: &Server) -> Result<(), String> {
    let err = |e: fantoccini::error::CmdError| e.to_string();
    browser
        .goto(&server.url("/admin/login/?next=/admin/"))
        .await
        .map_err(err)?;
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
    browser
        .find(Locator::Css("input[type=submit]"))
        .await
        .map_err(err)?
        .click()
        .await
        .map_err(err)?;
    browser
        .wait()
        .at_most(DEADLINE)
        .for_element(Locator::XPath("//h1[contains(., 'Site administration')]"))
        .await
        .map_err(|e| format!("no 'Site administration' after login: {e}"))?;
    Ok(())
}
