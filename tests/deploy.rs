//! deploy/ validated without a cluster, a Docker engine or systemd running: the
//! Kubernetes manifests against the API schemas (`kubernetes-validate --strict`), the
//! Dockerfile with hadolint, the systemd unit with `systemd-analyze verify`, and the
//! config the ConfigMap ships with `ferricorn --check-config` and by serving with it.
//!
//! kubernetes-validate and hadolint come from target/deploy-venv, which
//! tests/run-all.sh creates from tests/deploy-requirements.txt; a missing validator
//! fails the test (it is never skipped).

mod common;

use common::{assert_success, client, repo, Server, BIN};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// The Kubernetes versions the manifests must be valid for: the oldest we support
/// and the newest kubernetes-validate knows.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// A validator from target/deploy-venv, or a failure that says how to get it.
fn validator(name: &str) -> PathBuf {
    let path = repo().join("target/deploy-venv/bin").join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `bash tests/run-all.sh` (it installs tests/deploy-requirements.txt)",
        path.display()
    );
    path
}

fn run(cmd: &mut Command) -> Output {
    cmd.current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("deploy/kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn kubernetes_manifests_validate_strictly() {
    let files = manifests();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for want in [
        "configmap.yaml",
        "deployment.yaml",
        "hpa.yaml",
        "pdb.yaml",
        "service.yaml",
    ] {
        assert!(names.iter().any(|n| n == want), "no {want} in {names:?}");
    }
    let bin = validator("kubernetes-validate");
    for version in KUBERNETES_VERSIONS {
        let out = run(Command::new(&bin)
            .args(["--strict", "-k", version])
            .args(&files));
        assert_success(&format!("kubernetes-validate --strict -k {version}"), &out);
        // One "passed" line per resource: nothing was silently ignored.
        let passed = String::from_utf8_lossy(&out.stdout)
            .matches(" passed ")
            .count()
            + String::from_utf8_lossy(&out.stderr)
                .matches(" passed ")
                .count();
        assert_eq!(
            passed,
            files.len(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn dockerfile_passes_hadolint() {
    let out = run(Command::new(validator("hadolint")).args([
        "--no-color",
        "--failure-threshold",
        "style",
        "deploy/Dockerfile",
    ]));
    assert_success("hadolint deploy/Dockerfile", &out);
}

/// Docker cannot run here, so at least every file the Dockerfile copies from the
/// build context must exist (with the default APP_DIR).
#[test]
fn dockerfile_copies_files_that_exist() {
    let dockerfile = read("deploy/Dockerfile");
    // The build args' defaults (`ARG NAME=value`), for `${NAME}` in COPY sources.
    let defaults: Vec<(String, String)> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("ARG ")?.split_once('='))
        .map(|(k, v)| (format!("${{{}}}", k.trim()), v.trim().to_string()))
        .collect();
    assert!(
        defaults.iter().any(|(k, _)| k == "${APP_DIR}"),
        "{defaults:?}"
    );
    let mut copies = 0;
    for line in dockerfile.lines() {
        let Some(args) = line.strip_prefix("COPY ") else {
            continue;
        };
        if args.contains("--from=") {
            continue;
        }
        let words: Vec<&str> = args.split_whitespace().collect();
        for src in &words[..words.len() - 1] {
            let src = defaults
                .iter()
                .fold(src.to_string(), |s, (k, v)| s.replace(k, v));
            assert!(!src.contains('$'), "COPY source {src}: unknown build arg");
            assert!(matches_a_file(&src), "COPY source {src} does not exist");
            copies += 1;
        }
    }
    assert!(copies > 0, "no COPY from the build context?");
    assert!(dockerfile.contains("ENTRYPOINT [\"ferricorn\"]"));
    assert!(dockerfile.contains("USER 10001:10001"));
}

/// Whether a COPY source names a file or directory of the repository. A `*` in the
/// last part (the prebuilt wheel) must match a file there; `tests/container.rs`
/// builds the wheel before it builds the image, so here the wheel of this run counts.
fn matches_a_file(src: &str) -> bool {
    let path = repo().join(src);
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    let Some((head, tail)) = name.split_once('*') else {
        return path.exists();
    };
    let Ok(entries) = std::fs::read_dir(path.parent().unwrap()) else {
        return false;
    };
    entries.filter_map(Result::ok).any(|e| {
        let n = e.file_name().to_string_lossy().to_string();
        n.starts_with(head) && n.ends_with(tail) && n.len() >= head.len() + tail.len()
    })
}

/// The `ferricorn.toml: |` block of the ConfigMap, un-indented.
fn configmap_toml() -> String {
    let yaml = read("deploy/kubernetes/configmap.yaml");
    let mut lines = yaml.lines();
    lines
        .by_ref()
        .find(|l| l.trim() == "ferricorn.toml: |")
        .expect("configmap.yaml has no `ferricorn.toml: |` block");
    let mut toml = String::new();
    for line in lines {
        if line.is_empty() {
            toml.push('\n');
        } else if let Some(rest) = line.strip_prefix("    ") {
            toml.push_str(rest);
            toml.push('\n');
        } else {
            break; // the next key at a lower indentation
        }
    }
    toml
}

/// The ConfigMap's config with the image's paths moved to the host's: the pod's /tmp
/// is its own emptyDir, so the sockets go under `dir`; the image's /app/static is
/// the repository's static_fixtures (the Dockerfile's STATIC_DIR).
fn configmap_toml_on_the_host(dir: &Path) -> String {
    let toml = configmap_toml();
    let moves = [
        ("runtime_dir = \"/tmp/ferricorn\"", dir.join("run")),
        ("dir = \"/app/static\"", repo().join("static_fixtures")),
    ];
    moves.iter().fold(toml, |toml, (image, host)| {
        assert!(toml.contains(image), "{image} in {toml}");
        let key = image.split(' ').next().unwrap();
        toml.replace(image, &format!("{key} = {:?}", host.display().to_string()))
    })
}

#[test]
fn configmap_holds_conf_kubernetes_toml() {
    let embedded = configmap_toml();
    assert!(embedded.contains("[server]"), "{embedded}");
    assert_eq!(
        embedded.trim_end(),
        read("conf/kubernetes.toml").trim_end(),
        "deploy/kubernetes/configmap.yaml must embed conf/kubernetes.toml verbatim"
    );
}

#[test]
fn configmap_config_passes_check_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferricorn.toml");
    std::fs::write(&path, configmap_toml_on_the_host(dir.path())).unwrap();
    // chdir = "/app" exists only in the image; the same demo app is in conf/demo.
    let out = Command::new(BIN)
        .args(["-c", path.to_str().unwrap(), "--check-config", "--chdir"])
        .arg(repo().join("conf/demo"))
        // In the image, the venv's ferricorn finds the venv's python beside it.
        .env("VIRTUAL_ENV", common::venv())
        .output()
        .unwrap();
    assert_success(
        "ferricorn --check-config on the ConfigMap's ferricorn.toml",
        &out,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("bind = [\"0.0.0.0:8000\"]"), "{stdout}");
    assert!(stdout.contains("# config OK"), "{stdout}");
}

/// What a pod does, on the host: the ConfigMap's config serves the demo app, the
/// admin listener answers the probes and Prometheus, access lines are JSON on
/// stdout, and SIGTERM drains and exits 0. Only the addresses, the runtime dir and
/// chdir (/app exists only in the image) are changed.
#[test]
fn configmap_config_serves_the_demo_app() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferricorn.toml");
    std::fs::write(&path, configmap_toml_on_the_host(dir.path())).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let admin = format!("127.0.0.1:{port}");
    let demo = repo().join("conf/demo");
    let mut server = Server::launch([
        "-c",
        path.to_str().unwrap(),
        "--chdir",
        demo.to_str().unwrap(),
        "--admin-bind",
        &admin,
        "-w",
        "1",
    ])
    .start();
    let c = client();
    let get = |url: String| c.get(url).send().unwrap();
    assert_eq!(get(format!("http://{admin}/healthz")).status(), 200);
    assert_eq!(get(format!("http://{admin}/readyz")).status(), 200);
    let hello = get(server.url("/hello?from=deploy"));
    assert_eq!(hello.status(), 200);
    assert_eq!(hello.text().unwrap(), "Hello, World!");
    let css = get(server.url("/static/css/site.css"));
    assert_eq!(css.status(), 200);
    assert_eq!(css.headers()["cache-control"], "public, max-age=3600");

    let line = server.wait_for_log("/hello", Duration::from_secs(10));
    let entry: serde_json::Value = serde_json::from_str(&line)
        .unwrap_or_else(|e| server.fail(&format!("access line is not JSON ({e}): {line}")));
    assert_eq!(entry["path"], "/hello", "{line}");
    assert_eq!(entry["status"], 200, "{line}");

    let metrics = get(format!("http://{admin}/metrics")).text().unwrap();
    assert!(
        metrics.contains("ferricorn_requests_total{kind=\"app\",status=\"2xx\"} 1"),
        "{metrics}"
    );

    server.signal(15);
    assert_eq!(server.wait_exit(Duration::from_secs(30)).code(), Some(0));
}

/// The ports the Deployment declares, probes and scrapes are the ones the config binds.
#[test]
fn deployment_ports_match_the_config() {
    let table: toml::Table = toml::from_str(&read("conf/kubernetes.toml")).unwrap();
    let port = |bind: &str| bind.rsplit(':').next().unwrap().to_string();
    let http = port(table["server"]["bind"][0].as_str().unwrap());
    let admin = port(table["admin"]["bind"].as_str().unwrap());
    let deployment = read("deploy/kubernetes/deployment.yaml");
    for want in [
        format!("containerPort: {http}"),
        format!("containerPort: {admin}"),
        format!("prometheus.io/port: \"{admin}\""),
        "path: /readyz".into(),
        "path: /healthz".into(),
    ] {
        assert!(
            deployment.contains(&want),
            "deployment.yaml has no `{want}`"
        );
    }
    let dockerfile = read("deploy/Dockerfile");
    assert!(dockerfile.contains(&format!("EXPOSE {http} {admin}")));
}

fn graceful_timeout(rel: &str) -> i64 {
    let table: toml::Table = toml::from_str(&read(rel)).unwrap();
    table["server"]["graceful_timeout"]
        .as_integer()
        .unwrap_or_else(|| panic!("{rel}: no [server] graceful_timeout"))
}

/// The first integer after `key` on its line in `text`.
fn number_after(text: &str, key: &str) -> i64 {
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with(key))
        .unwrap_or_else(|| panic!("no {key}"));
    line[line.find(key).unwrap() + key.len()..]
        .trim_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .unwrap_or_else(|e| panic!("{line}: {e}"))
}

/// Kubernetes sends SIGKILL terminationGracePeriodSeconds after it starts the preStop
/// hook, systemd TimeoutStopSec after SIGTERM: both must leave room for the drain.
#[test]
fn stop_timeouts_exceed_the_graceful_timeout() {
    let deployment = read("deploy/kubernetes/deployment.yaml");
    let grace = number_after(&deployment, "terminationGracePeriodSeconds:");
    let pre_stop = number_after(&deployment, "command: [\"sleep\",");
    let k8s = graceful_timeout("conf/kubernetes.toml");
    assert!(
        grace > pre_stop + k8s,
        "terminationGracePeriodSeconds {grace} <= preStop {pre_stop} + graceful_timeout {k8s}"
    );

    let unit = read("deploy/systemd/ferricorn.service");
    let stop = number_after(&unit, "TimeoutStopSec=");
    let vm = graceful_timeout("conf/systemd.toml");
    assert!(stop > vm, "TimeoutStopSec {stop} <= graceful_timeout {vm}");
}

#[test]
fn systemd_units_verify() {
    let unit = read("deploy/systemd/ferricorn.service");
    // The venv's ferricorn: it runs the workers on the python beside it.
    let exec = "ExecStart=/srv/mysite/.venv/bin/ferricorn -c /etc/ferricorn/ferricorn.toml";
    assert!(unit.lines().any(|l| l == exec), "no `{exec}` line");
    assert!(
        unit.lines().any(|l| l == "Type=notify"),
        "ferricorn says READY=1"
    );
    // `verify` wants ExecStart's binary to exist: point it at the one just built.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("ferricorn.service");
    std::fs::write(&copy, unit.replace("/srv/mysite/.venv/bin/ferricorn", BIN)).unwrap();
    let socket = dir.path().join("ferricorn.socket");
    std::fs::write(&socket, read("deploy/systemd/ferricorn.socket")).unwrap();
    for unit in [&copy, &socket] {
        let out = run(Command::new("systemd-analyze").arg("verify").arg(unit));
        assert_success("systemd-analyze verify", &out);
        // verify reports some problems (unknown directives, bad values) on stderr only.
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.trim().is_empty(),
            "systemd-analyze verify {}:\n{stderr}",
            unit.display()
        );
    }
}

#[test]
fn systemd_config_runtime_dir_is_the_units() {
    let unit = read("deploy/systemd/ferricorn.service");
    assert!(unit.lines().any(|l| l == "RuntimeDirectory=ferricorn"));
    let table: toml::Table = toml::from_str(&read("conf/systemd.toml")).unwrap();
    assert_eq!(
        table["server"]["runtime_dir"].as_str(),
        Some("/run/ferricorn")
    );
}
