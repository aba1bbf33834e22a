//! deploy/Dockerfile built and run for real, with Debian's podman and runc through
//! tests/container/podman.sh (the flags this machine needs). No registry is reachable
//! here, so the base image is the Debian sid rootfs of tests/pythons/setup.sh,
//! imported with `podman import`, and the wheel is the one tests/run-all.sh built
//! (`--build-arg WHEEL=prebuilt`). The image is built once per run and shared.
//!
//! The running container must serve the demo app and a static file, answer the
//! probes, run as uid 10001 without capabilities on a read-only root with only /tmp
//! writable, drain an in-flight request on `podman stop` and exit 0, and reap
//! orphans as PID 1. A machine where podman cannot build or run fails these tests.

mod common;

use common::{client, free_port, repo, wait_until, Launch, Server};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const BASE: &str = "localhost/ferricorn-test-base:sid";
const IMAGE: &str = "localhost/ferricorn-test:latest";
/// The Python of the sid rootfs that the image's venv is made with.
const PYTHON: &str = "python3.14";
/// The user the Dockerfile runs the server as.
const UID: &str = "10001";

/// Writes to the test log even when libtest captures the test's output.
fn say(text: &str) {
    let _ = writeln!(std::io::stderr(), "container: {text}");
}

fn podman<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut cmd = Command::new("bash");
    cmd.arg(repo().join("tests/container/podman.sh")).args(args);
    cmd
}

/// Runs a podman command to completion; its stdout, or an error with everything.
fn run(mut cmd: Command) -> Result<String, String> {
    let out: Output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The image, built on first use by one test while the others wait.
fn image() -> &'static str {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    match BUILT.get_or_init(build_image) {
        Ok(()) => IMAGE,
        Err(why) => panic!("the image could not be built: {why}"),
    }
}

fn build_image() -> Result<(), String> {
    import_base()?;
    let context = build_context()?;
    let started = Instant::now();
    let mut build = podman(["build", "--network=host", "-f", "deploy/Dockerfile"]);
    for arg in [
        format!("PYTHON_IMAGE={BASE}"),
        format!("PYTHON={PYTHON}"),
        "WHEEL=prebuilt".into(),
    ] {
        build.args(["--build-arg", &arg]);
    }
    build.args(["-t", IMAGE]).arg(&context);
    build.current_dir(&context);
    run(build)?;
    // Each build re-tags IMAGE and leaves the previous one dangling (about 680 MB with
    // its build stage): without this, every run of the suite kept 1 GB more on disk.
    run(podman(["image", "prune", "-f"]))?;
    let size = |image: &str| -> Result<f64, String> {
        let bytes = run(podman(["image", "inspect", "--format", "{{.Size}}", image]))?;
        let bytes: f64 = bytes.trim().parse().map_err(|e| format!("size: {e}"))?;
        Ok(bytes / (1024.0 * 1024.0))
    };
    say(&format!(
        "image {IMAGE}: {:.1} MiB (base {BASE}: {:.1} MiB), built in {:.0} s",
        size(IMAGE)?,
        size(BASE)?,
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// `tar -C ROOTFS -c . | podman import - BASE`, from the chroot of the Python tests,
/// without what only those tests use (their venvs, apps and users' homes, PyPy).
fn import_base() -> Result<(), String> {
    let exists = podman(["image", "exists", BASE]).status();
    if exists.is_ok_and(|s| s.success()) {
        return Ok(());
    }
    let rootfs = repo().join("target/chroot-sid");
    if !rootfs.join("usr/bin").join(PYTHON).exists() {
        return Err(format!(
            "{} has no {PYTHON}: run `bash tests/run-all.sh` (tests/pythons/setup.sh makes it)",
            rootfs.display()
        ));
    }
    let script = format!(
        "tar -C {root:?} --exclude=./opt --exclude=./home --exclude=./root \
         --exclude=./var/cache/apt --exclude=./var/lib/apt/lists \
         --exclude='./usr/lib/pypy*' -c . \
         | bash tests/container/podman.sh import - {BASE}",
        root = rootfs.display().to_string()
    );
    let mut import = Command::new("bash");
    import
        .args(["-o", "pipefail", "-c", &script])
        .current_dir(repo());
    run(import).map(|_| ())
}

/// The build context: the repository's files (tracked or not ignored) and the
/// wheel, under target/container-context with deploy/Dockerfile.dockerignore as its
/// `.dockerignore`. A copy, because podman 4.3 would otherwise walk target/.
fn build_context() -> Result<PathBuf, String> {
    let context = repo().join("target/container-context");
    let _ = std::fs::remove_dir_all(&context);
    let mut files = Command::new("git");
    files
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(repo());
    let listed = run(files)?;
    let mut paths: Vec<PathBuf> = listed
        .split('\0')
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .collect();
    let wheels = std::fs::read_dir(repo().join("target/wheels"))
        .map_err(|e| format!("target/wheels: {e}: run `bash deploy/build-wheel.sh`"))?;
    paths.extend(
        wheels
            .filter_map(Result::ok)
            .map(|e| Path::new("target/wheels").join(e.file_name()))
            .filter(|p| p.extension().is_some_and(|e| e == "whl")),
    );
    for rel in &paths {
        copy_entry(&repo().join(rel), &context.join(rel))?;
    }
    let ignore = repo().join("deploy/Dockerfile.dockerignore");
    copy_entry(&ignore, &context.join(".dockerignore"))?;
    Ok(context)
}

/// Copies a file, or a symlink as a symlink (static_fixtures has one that points
/// out of its root, which the image must keep as it is).
fn copy_entry(from: &Path, to: &Path) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("copy {} -> {}: {e}", from.display(), to.display());
    std::fs::create_dir_all(to.parent().unwrap()).map_err(fail)?;
    let meta = std::fs::symlink_metadata(from).map_err(fail)?;
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(from).map_err(fail)?;
        std::os::unix::fs::symlink(target, to).map_err(fail)
    } else if meta.is_file() {
        std::fs::copy(from, to).map(|_| ()).map_err(fail)
    } else {
        Ok(()) // a deleted file still in git's index, or a submodule
    }
}

/// A running container of the image: the server's output through `podman run`, its
/// port, its admin address. Dropping it removes the container.
struct Container {
    server: Server,
    name: String,
    admin: String,
}

impl Container {
    /// `podman run` as the deploy README shows it: read-only root, only /tmp
    /// writable (a tmpfs), no capabilities. Host networking on ports of our choosing.
    fn start() -> Container {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let image = image();
        let name = format!(
            "ferricorn-test-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        );
        let admin = format!("127.0.0.1:{}", free_port());
        let script = repo().join("tests/container/podman.sh");
        let mut args: Vec<String> = ["run", "--rm", "--name", &name, "--network=host"]
            .map(String::from)
            .into();
        args.extend(
            [
                "--read-only",
                "--read-only-tmpfs=false",
                "--tmpfs",
                "/tmp:rw,mode=1777",
                "--cap-drop",
                "ALL",
                "--security-opt",
                "no-new-privileges",
                image,
                // The image's CMD, with addresses of our own and text logs so the
                // helper reads "Listening at:"; access lines stay JSON.
                "-c",
                "/etc/ferricorn/ferricorn.toml",
                "-b",
                "127.0.0.1:0",
                "--admin-bind",
                &admin,
                "--log-format",
                "text",
                "-w",
                "2",
            ]
            .map(String::from),
        );
        args.insert(0, script.display().to_string());
        let server = Launch::program("bash", args).start();
        Container {
            server,
            name,
            admin,
        }
    }

    /// `podman exec` as the image's user; stdout.
    fn exec(&self, script: &str) -> Result<String, String> {
        run(podman(["exec", &self.name, "sh", "-c", script]))
    }

    fn admin(&self, path: &str) -> reqwest::blocking::Response {
        client()
            .get(format!("http://{}{path}", self.admin))
            .send()
            .unwrap()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(["rm", "-f", "-t", "0", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn the_image_serves_the_demo_app_static_files_and_probes() {
    let c = Container::start();
    let hello = client().get(c.server.url("/hello")).send().unwrap();
    assert_eq!(hello.status(), 200);
    assert_eq!(hello.text().unwrap(), "Hello, World!");

    let css = client()
        .get(c.server.url("/static/css/site.css"))
        .send()
        .unwrap();
    assert_eq!(css.status(), 200);
    assert_eq!(css.headers()["cache-control"], "public, max-age=3600");
    let expected = std::fs::read(repo().join("static_fixtures/css/site.css")).unwrap();
    assert_eq!(css.bytes().unwrap().as_ref(), expected.as_slice());

    assert_eq!(c.admin("/healthz").status(), 200);
    assert_eq!(c.admin("/readyz").status(), 200);
    let metrics = c.admin("/metrics").text().unwrap();
    assert!(
        metrics.contains("ferricorn_requests_total{kind=\"app\",status=\"2xx\"} 1"),
        "{metrics}"
    );
    // The Kubernetes config's access log: JSON lines on stdout.
    let line = c.server.wait_for_log("\"/hello\"", Duration::from_secs(10));
    let entry: serde_json::Value = serde_json::from_str(line.trim()).unwrap_or_else(|e| {
        c.server
            .fail(&format!("access line not JSON ({e}): {line}"))
    });
    assert_eq!(entry["status"], 200, "{line}");
}

/// PID 1 (the master) and its children (the workers), as `pid comm uid capeff`:
/// their effective uid and capabilities.
fn processes(c: &Container) -> Vec<Vec<String>> {
    let script = "for p in 1 $(cat /proc/1/task/*/children); do \
        echo $p $(cat /proc/$p/comm) \
          $(awk '/^Uid:/ {print $3} /^CapEff:/ {print $2}' /proc/$p/status); \
      done";
    let out = c.exec(script).unwrap_or_else(|e| c.server.fail(&e));
    out.lines()
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect()
}

#[test]
fn the_container_runs_unprivileged_on_a_read_only_root() {
    let c = Container::start();
    let procs = processes(&c);
    assert_eq!(procs.len(), 3, "master and 2 workers: {procs:?}");
    assert_eq!(procs[0][1], "ferricorn", "PID 1: {procs:?}");
    for p in &procs {
        assert_eq!(p[2], UID, "effective uid of {p:?}");
        assert_eq!(p[3], "0000000000000000", "capabilities of {p:?}");
    }
    let refused = c.exec("touch /app/x").unwrap_err();
    assert!(refused.contains("Read-only file system"), "{refused}");
    c.exec("touch /tmp/x && rm /tmp/x")
        .unwrap_or_else(|e| c.server.fail(&format!("/tmp must be writable: {e}")));
    // The worker sockets: a 0700 directory of the server's user under /tmp.
    let dirs = c
        .exec("stat -c '%a %u %n' /tmp/ferricorn/ferricorn-*")
        .unwrap();
    assert_eq!(dirs.lines().count(), 1, "{dirs}");
    assert!(dirs.starts_with(&format!("700 {UID} ")), "{dirs}");
}

/// `podman stop` sends TERM: a streamed response already under way finishes, and
/// the container exits 0 well within the grace period.
#[test]
fn podman_stop_drains_an_in_flight_request_and_exits_0() {
    let mut c = Container::start();
    let mut conn = TcpStream::connect(c.server.addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    conn.write_all(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(conn);
    let mut body = String::new();
    while !body.contains("line 0") {
        assert!(reader.read_line(&mut body).unwrap() > 0, "{body}");
    }
    let stopped = Instant::now();
    let stop = std::thread::spawn({
        let name = c.name.clone();
        move || run(podman(["stop", "-t", "20", &name]))
    });
    // The rest of the stream, to the last chunk.
    while !body.ends_with("0\r\n\r\n") {
        assert!(
            reader.read_line(&mut body).unwrap() > 0,
            "cut short: {body}"
        );
    }
    assert!(body.contains("line 4"), "{body}");
    stop.join().unwrap().unwrap_or_else(|e| c.server.fail(&e));
    let status = c.server.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{}", c.server.log());
    let took = stopped.elapsed();
    say(&format!(
        "podman stop drained and exited 0 in {:.2} s",
        took.as_secs_f64()
    ));
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert!(c.server.log().contains("draining"), "{}", c.server.log());
}

/// An orphan whose parent left the container is adopted by PID 1, ferricorn, which
/// must reap it when it exits, or zombies pile up.
#[test]
fn pid_1_reaps_orphans() {
    let c = Container::start();
    let pid = c
        .exec("sleep 600 >/dev/null 2>&1 & echo $!")
        .unwrap_or_else(|e| c.server.fail(&e));
    let pid = pid.trim();
    let stat = c.exec(&format!("cat /proc/{pid}/stat")).unwrap();
    let ppid = stat[stat.rfind(')').unwrap() + 2..]
        .split(' ')
        .nth(1)
        .unwrap();
    assert_eq!(ppid, "1", "the orphan's parent: {stat}");
    // Ended on our word (not after a fixed time a slow machine may overrun before
    // its parent is read): once it exits it must disappear, not stay a zombie.
    c.exec(&format!("kill {pid}"))
        .unwrap_or_else(|e| c.server.fail(&e));
    wait_until(
        &format!("PID 1 reaping orphan {pid}"),
        Duration::from_secs(15),
        || c.exec(&format!("test -e /proc/{pid}")).is_err(),
    );
}
