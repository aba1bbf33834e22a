//! Installing ferricorn from its sources as a Python team does, with nothing run by
//! hand first: `pip install git+file://…`, `uv pip install .` and `pip install .` in
//! a clone, `pip wheel .`, and `pip install` of the sdist `python -m build --sdist`
//! makes, each into a fresh venv and each through pyproject.toml's PEP 517 backend
//! (deploy/pep517/ferricorn_build.py). Every install must put the `ferricorn` command
//! in the venv's bin/ and the worker module in its site-packages: `ferricorn
//! --version` and `python -m ferricorn --version` answer, and hello world is served
//! both ways, on the venv's own python.
//!
//! The sources are what HEAD holds (clones), not the working tree. Every build shares
//! one cargo target directory, target/install-build, whose dependencies are seeded
//! from target/release on first use (tests/run-all.sh built them for the wheel): only
//! ferricorn's own crates compile, twice (pip's clone, the sdist). It is not
//! target/ itself: cargo judges a path crate fresh by mtimes, so a build of a clone
//! there could be taken for a build of older, uncommitted edits in the working tree.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The venv tests/run-all.sh made for `python -m build` (tests/build-requirements.txt).
fn build_venv() -> PathBuf {
    let v = repo().join("target/build-venv");
    assert!(
        v.join("bin/python").exists(),
        "{} is missing: run `bash tests/run-all.sh` (it creates it)",
        v.display()
    );
    v
}

/// The shared target directory, its dependencies copied from target/release (with
/// their mtimes, which cargo's freshness checks read) the first time.
fn cargo_target_dir() -> PathBuf {
    let dir = repo().join("target/install-build");
    let release = repo().join("target/release");
    if !dir.join("release").exists() && release.join("deps").exists() {
        let seed = format!(
            "set -e; mkdir -p '{to}/deps'; cp -a '{from}/build' '{from}/.fingerprint' '{to}/'; \
             find '{from}/deps' -maxdepth 1 -type f ! -name 'libferricorn*' ! -name 'ferricorn*' \
             ! -name 'lib_worker*' -exec cp -a {{}} '{to}/deps/' ';'",
            from = release.display(),
            to = dir.join("release").display()
        );
        let out = Command::new("sh").args(["-c", &seed]).output().unwrap();
        assert_success("seeding target/install-build", &out);
    }
    dir
}

/// `cmd` with the environment of every build here.
fn build_cmd(program: impl AsRef<std::ffi::OsStr>, target_dir: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("CARGO_TARGET_DIR", target_dir)
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        // A cached wheel would be installed without building anything.
        .env("PIP_NO_CACHE_DIR", "1")
        .env("UV_NO_CACHE", "1");
    cmd
}

fn run_ok(what: &str, cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_success(what, &out)
}

fn head_commit() -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo())
        .args(["rev-parse", "HEAD"])
        .output()
        .unwrap();
    assert_success("git rev-parse HEAD", &out)
        .trim()
        .to_string()
}

/// A clone of the repository at `commit`, as a user's `git clone` gives.
fn clone_at(dir: &Path, commit: &str) -> PathBuf {
    let clone = dir.join("ferricorn");
    run_ok(
        "git clone",
        Command::new("git")
            .args(["clone", "-q", "--no-checkout"])
            .arg(repo())
            .arg(&clone),
    );
    run_ok(
        "git checkout",
        Command::new("git")
            .arg("-C")
            .arg(&clone)
            .args(["checkout", "-q", "--detach", commit]),
    );
    clone
}

/// A fresh venv (with its own pip) of the test venv's interpreter.
fn fresh_venv(dir: &Path, name: &str) -> PathBuf {
    let venv = dir.join(name);
    run_ok(
        "python -m venv",
        Command::new(venv_python(&venv_of_tests()))
            .args(["-m", "venv"])
            .arg(&venv),
    );
    venv
}

fn venv_of_tests() -> PathBuf {
    venv()
}

fn venv_python(venv: &Path) -> PathBuf {
    venv.join("bin/python")
}

/// What an install must give: the command on the venv's bin/, `python -m
/// ferricorn`, and hello world served by each on the venv's python.
fn assert_complete(how: &str, venv: &Path) {
    let bin = venv.join("bin/ferricorn");
    assert!(bin.exists(), "{how}: no {}", bin.display());
    let version = format!("ferricorn {}", env!("CARGO_PKG_VERSION"));
    let out = run_ok(
        &format!("{how}: ferricorn --version"),
        Command::new(&bin).arg("--version"),
    );
    assert!(out.contains(&version), "{how}: {out}");
    let out = run_ok(
        &format!("{how}: python -m ferricorn --version"),
        Command::new(venv_python(venv)).args(["-m", "ferricorn", "--version"]),
    );
    assert!(out.contains(&version), "{how}: {out}");
    let apps = apps_dir();
    let args = [
        "--chdir",
        apps.to_str().unwrap(),
        "probe:app",
        "-b",
        "127.0.0.1:0",
    ];
    let module: Vec<&str> = ["-m", "ferricorn"].iter().chain(&args).copied().collect();
    for server in [
        Launch::program(&bin, args),
        Launch::program(venv_python(venv), module),
    ] {
        // VIRTUAL_ENV as after `. venv/bin/activate` (the launcher's default is the
        // test venv's).
        let server = server.env("VIRTUAL_ENV", venv).start();
        let info = get_json(&server.url("/pyinfo"));
        assert_eq!(
            info["executable"],
            venv_python(venv).to_str().unwrap(),
            "{how}"
        );
    }
}

/// `tar tzf SDIST`, names without the `ferricorn-VERSION/` prefix.
fn sdist_names(sdist: &Path) -> Vec<String> {
    let list = run_ok("tar tzf", Command::new("tar").arg("tzf").arg(sdist));
    let prefix = format!("ferricorn-{}/", env!("CARGO_PKG_VERSION"));
    list.lines()
        .map(|l| {
            l.strip_prefix(&prefix)
                .unwrap_or_else(|| panic!("{l}: not under {prefix}"))
                .to_string()
        })
        .collect()
}

/// The sdist holds what building the front and the module needs and nothing more
/// of the repository: every tracked file of the three crates, the lock, the
/// backend, the root manifest with its package.
fn assert_sdist_contents(sdist: &Path, clone: &Path) {
    let names = sdist_names(sdist);
    let tracked = run_ok(
        "git ls-files",
        Command::new("git")
            .arg("-C")
            .arg(clone)
            .args(["ls-files", "src", "wire", "worker"]),
    );
    for needed in tracked.lines().chain([
        "Cargo.toml",
        "Cargo.lock",
        "pyproject.toml",
        "README.md",
        "PKG-INFO",
        "deploy/pep517/ferricorn_build.py",
    ]) {
        assert!(
            names.iter().any(|n| n == needed),
            "{needed} not in the sdist"
        );
    }
    for name in &names {
        let top = ["target/", "tests/", "benches/", "static_fixtures/", ".git"];
        assert!(
            !top.iter().any(|t| name.starts_with(t)),
            "{name} in the sdist"
        );
        assert!(
            !name.contains("__pycache__") && !name.contains("venv/"),
            "{name} in the sdist"
        );
    }
    let size = std::fs::metadata(sdist).unwrap().len();
    assert!(size < 2 << 20, "the sdist is {size} bytes");
    let prefix = format!("ferricorn-{}", env!("CARGO_PKG_VERSION"));
    let manifest = run_ok(
        "tar xzf -O",
        Command::new("tar")
            .arg("xzf")
            .arg(sdist)
            .arg("-O")
            .arg(format!("{prefix}/Cargo.toml")),
    );
    assert_eq!(
        manifest,
        std::fs::read_to_string(clone.join("Cargo.toml")).unwrap(),
        "the sdist's Cargo.toml is not the repository's"
    );
}

/// The names in a wheel (zip), read with the test venv's python.
fn wheel_names(wheel: &Path) -> String {
    run_ok(
        "zipfile",
        Command::new(venv_python(&venv_of_tests()))
            .args([
                "-c",
                "import sys, zipfile; print('\\n'.join(zipfile.ZipFile(sys.argv[1]).namelist()))",
            ])
            .arg(wheel),
    )
}

fn only_file(dir: &Path, ext: &str) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_str().unwrap().ends_with(ext))
        .collect();
    assert_eq!(found.len(), 1, "{found:?} in {}", dir.display());
    found[0].clone()
}

/// `pip install git+file://REPO@COMMIT`: pip clones it itself.
fn pip_install_git_url(dir: &Path, target: &Path, commit: &str) {
    let venv = fresh_venv(dir, "pip-git");
    let url = format!("git+file://{}@{commit}", repo().display());
    run_ok(
        "pip install git+file://",
        build_cmd(venv_python(&venv), target).args(["-m", "pip", "install", "-q", &url]),
    );
    assert_complete("pip install git+file://", &venv);
}

/// `uv pip install .`, `pip install .` and `pip wheel .` in `clone`.
fn installs_of_a_clone(dir: &Path, target: &Path, clone: &Path) {
    let uv = venv_of_tests().join("bin/uv");
    assert!(
        uv.exists(),
        "uv is missing from the test venv (tests/requirements.txt)"
    );
    let venv = fresh_venv(dir, "uv-dot");
    run_ok(
        "uv pip install .",
        build_cmd(&uv, target)
            .current_dir(clone)
            .args(["pip", "install", "-q", "--python"])
            .arg(venv_python(&venv))
            .arg("."),
    );
    assert_complete("uv pip install .", &venv);

    let venv = fresh_venv(dir, "pip-dot");
    run_ok(
        "pip install .",
        build_cmd(venv_python(&venv), target)
            .current_dir(clone)
            .args(["-m", "pip", "install", "-q", "."]),
    );
    assert_complete("pip install .", &venv);

    let wheels = dir.join("wheels");
    run_ok(
        "pip wheel .",
        build_cmd(venv_python(&venv), target)
            .current_dir(clone)
            .args(["-m", "pip", "wheel", "-q", "--no-deps", "-w"])
            .arg(&wheels)
            .arg("."),
    );
    let names = wheel_names(&only_file(&wheels, ".whl"));
    let data = format!(
        "ferricorn-{}.data/scripts/ferricorn",
        env!("CARGO_PKG_VERSION")
    );
    for needed in [
        data.as_str(),
        "ferricorn/_worker.abi3.so",
        "ferricorn/__main__.py",
    ] {
        assert!(
            names.lines().any(|n| n == needed),
            "{needed} not in the wheel:\n{names}"
        );
    }
}

/// `python -m build --sdist` of `clone`, checked, then `pip install SDIST`: the
/// venv it installed into.
fn install_of_the_sdist(dir: &Path, target: &Path, clone: &Path) -> PathBuf {
    let sdists = dir.join("sdist");
    run_ok(
        "python -m build --sdist",
        build_cmd(venv_python(&build_venv()), target)
            .args(["-m", "build", "--sdist", "--outdir"])
            .arg(&sdists)
            .arg(clone),
    );
    let sdist = only_file(&sdists, ".tar.gz");
    assert_sdist_contents(&sdist, clone);
    let venv = fresh_venv(dir, "pip-sdist");
    run_ok(
        "pip install SDIST",
        build_cmd(venv_python(&venv), target)
            .args(["-m", "pip", "install", "-q"])
            .arg(&sdist),
    );
    assert_complete("pip install SDIST", &venv);
    venv
}

/// `python -m ferricorn` where the command is gone: one line naming where it
/// looked, and no traceback.
fn python_m_without_the_command_is_one_line(venv: &Path) {
    std::fs::remove_file(venv.join("bin/ferricorn")).unwrap();
    let out = Command::new(venv_python(venv))
        .args(["-m", "ferricorn", "--version"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("ferricorn: the ferricorn command is not installed beside ")
            && err.contains(venv.join("bin/ferricorn").to_str().unwrap()),
        "{err}"
    );
}

#[test]
fn every_way_of_installing_from_the_sources_gives_the_command_and_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    let target = cargo_target_dir();
    let commit = head_commit();
    // Cloned first: pip's own clone, built next, has newer files, so its build
    // compiles ferricorn's crates and the builds in this clone (the same commit)
    // find them fresh (cargo judges by mtimes). The sdist's build compiles them
    // again: the backend dates an unpacked sdist's files now.
    let clone = clone_at(dir.path(), &commit);
    pip_install_git_url(dir.path(), &target, &commit);
    installs_of_a_clone(dir.path(), &target, &clone);
    let venv = install_of_the_sdist(dir.path(), &target, &clone);
    python_m_without_the_command_is_one_line(&venv);
}

/// The backend's two decisions, on made-up input: which of cargo's messages names
/// the front (not the library or an example of the same name, wherever --target
/// puts it), and an sdist without the front's sources is refused, not shipped.
#[test]
fn the_backend_finds_the_front_and_refuses_an_sdist_without_it() {
    let maturin_venv = repo().join("target/maturin-venv");
    assert!(
        maturin_venv.join("bin/python").exists(),
        "{} is missing: run `bash deploy/build-wheel.sh`",
        maturin_venv.display()
    );
    let script = r#"
import io, json, sys, tarfile, tempfile
from pathlib import Path
sys.path.insert(0, "deploy/pep517")
import ferricorn_build as b

def artifact(name, kind, exe):
    return json.dumps({"reason": "compiler-artifact", "target": {"name": name, "kind": [kind]}, "executable": exe})

messages = "\n".join([
    "warning: not json",
    artifact("ferricorn", "lib", None),
    artifact("ferricorn-wire", "lib", None),
    artifact("ferricorn", "bin", "/t/x86_64-unknown-linux-gnu/release/ferricorn"),
    artifact("ferricorn", "example", "/t/release/examples/ferricorn"),
    json.dumps({"reason": "build-finished", "success": True}),
])
assert b._front_executable(messages) == Path("/t/x86_64-unknown-linux-gnu/release/ferricorn")
assert b._front_executable(artifact("ferricorn", "lib", None)) is None

with tempfile.TemporaryDirectory() as d:
    sdist = Path(d, "ferricorn-0.1.0.tar.gz")
    with tarfile.open(sdist, "w:gz") as t:
        for name in ["ferricorn-0.1.0/Cargo.toml", "ferricorn-0.1.0/wire/src/lib.rs"]:
            info = tarfile.TarInfo(name)
            info.size = 1
            t.addfile(info, io.BytesIO(b"x"))
    try:
        b.restore_root_manifest(sdist, b"[package]\n")
        raise SystemExit("an sdist without src/main.rs was accepted")
    except b.BuildError as e:
        assert "src/main.rs" in str(e), e
print("ok")
"#;
    let out = Command::new(maturin_venv.join("bin/python"))
        .current_dir(repo())
        .args(["-c", script])
        .output()
        .unwrap();
    assert_eq!(
        assert_success("the backend's unit checks", &out).trim(),
        "ok"
    );
}
