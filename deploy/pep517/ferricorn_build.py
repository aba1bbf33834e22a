"""ferricorn's PEP 517 build backend: maturin's, plus the front binary.

maturin packages the worker extension module (``ferricorn._worker``) but cannot put
a second Rust binary into the same wheel (maturin#368). So every hook that makes a
wheel first builds the ``ferricorn`` front with cargo (release, ``--locked``, the
workspace root's package) and stages it, debug info stripped, as
``<data>/scripts/ferricorn``, where ``<data>`` is pyproject.toml's
``[tool.maturin] data``: maturin puts it in the wheel's ``.data/scripts/``, which
pip and uv install into the environment's ``bin/``. Then maturin's own hook runs.

maturin's sdist turns the workspace's Cargo.toml into a virtual workspace (it drops
the root ``[package]``, the front, since the module does not depend on it); the
sdist hook puts the repository's Cargo.toml back, so a wheel built from the sdist
has its front too. The front's sources (``src/``) and this file are added by
``[tool.maturin] include``.

cargo reads its own environment: ``CARGO_TARGET_DIR`` shares one target directory
between builds (pip and uv build a ``git+`` URL or an sdist in a fresh temporary
copy of the sources, which would otherwise recompile every dependency).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any, Mapping

import maturin

# The hooks that need nothing of ours are maturin's.
get_requires_for_build_wheel = maturin.get_requires_for_build_wheel
get_requires_for_build_sdist = maturin.get_requires_for_build_sdist
get_requires_for_build_editable = maturin.get_requires_for_build_editable

FRONT = "ferricorn"


class BuildError(Exception):
    """A step of the build failed; the message says which, in one line."""


def _data_dir() -> Path:
    """pyproject.toml's `[tool.maturin] data`, relative to the source tree."""
    data = maturin.get_config().get("data")
    if not data:
        raise BuildError("pyproject.toml: [tool.maturin] data is not set")
    return Path(data)


def _ensure_data_dir() -> None:
    # maturin refuses every hook, metadata and sdist too, when the data directory
    # does not exist; only the wheel hooks fill it.
    _data_dir().mkdir(parents=True, exist_ok=True)


def _cargo_env() -> dict[str, str]:
    # The toolchain maturin itself uses (it installs one when cargo is missing).
    return maturin._get_env() or dict(os.environ)


def _build_front() -> Path:
    """`cargo build --release --locked --bin ferricorn`: the executable's path."""
    env = _cargo_env()
    cargo = env.get("CARGO") or shutil.which("cargo", path=env.get("PATH")) or "cargo"
    command = [
        cargo,
        "build",
        "--release",
        "--locked",
        "--bin",
        FRONT,
        "--message-format=json-render-diagnostics",
    ]
    print("Running `{}`".format(" ".join(command)), file=sys.stderr, flush=True)
    try:
        # stdout carries cargo's JSON messages; its progress and errors go to stderr.
        run = subprocess.run(command, stdout=subprocess.PIPE, env=env, check=False)
    except FileNotFoundError:
        raise BuildError("cargo (Rust's build tool) is not on PATH: https://rustup.rs") from None
    if run.returncode != 0:
        raise BuildError(f"building the front failed: {' '.join(command)} exited {run.returncode}")
    executable = _front_executable(run.stdout.decode(errors="replace"))
    if executable is None:
        raise BuildError(f"{' '.join(command)} named no `{FRONT}` executable")
    return executable


def _front_executable(messages: str) -> Path | None:
    """The front's path in cargo's JSON messages (it honours CARGO_TARGET_DIR,
    --target, build.target-dir: no path is guessed)."""
    found = None
    for line in messages.splitlines():
        if not line.startswith("{"):
            continue
        message = json.loads(line)
        target = message.get("target") or {}
        if (
            message.get("reason") == "compiler-artifact"
            and target.get("name") == FRONT
            and "bin" in target.get("kind", [])
            and message.get("executable")
        ):
            found = Path(message["executable"])
    return found


def _stage_front(executable: Path) -> None:
    """The front as `<data>/scripts/ferricorn`, without its debug info (the build's
    own copy keeps it, for profiling)."""
    scripts = _data_dir() / "scripts"
    shutil.rmtree(scripts, ignore_errors=True)
    scripts.mkdir(parents=True)
    staged = scripts / FRONT
    objcopy = shutil.which("objcopy")
    if objcopy is not None:
        subprocess.run([objcopy, "--strip-debug", str(executable), str(staged)], check=True)
    else:
        print("objcopy not found: the front is installed with its debug info", file=sys.stderr)
        shutil.copyfile(executable, staged)
    staged.chmod(0o755)


def _date_unpacked_sdist() -> None:
    """In an unpacked sdist (it has PKG-INFO), dates every source file now.

    maturin gives an sdist's files one fixed past date (reproducible builds); cargo
    judges a path crate fresh when its files are older than its last build, so in a
    shared CARGO_TARGET_DIR the build of another sdist of the same version, or of a
    clone, would pass for this one's."""
    if not Path("PKG-INFO").is_file():
        return
    skip = {_data_dir().parts[0], "target"}
    for root, dirs, files in os.walk("."):
        if root == ".":
            dirs[:] = [d for d in dirs if d not in skip]
        for name in files:
            os.utime(os.path.join(root, name))


def _with_front(hook, *args, **kwargs):
    try:
        _date_unpacked_sdist()
        _stage_front(_build_front())
    except BuildError as e:
        sys.exit(f"ferricorn: {e}")
    return hook(*args, **kwargs)


def build_wheel(
    wheel_directory: str,
    config_settings: Mapping[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    return _with_front(maturin.build_wheel, wheel_directory, config_settings, metadata_directory)


def build_editable(
    wheel_directory: str,
    config_settings: Mapping[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    return _with_front(maturin.build_editable, wheel_directory, config_settings, metadata_directory)


def prepare_metadata_for_build_wheel(
    metadata_directory: str, config_settings: Mapping[str, Any] | None = None
) -> str:
    _ensure_data_dir()
    return maturin.prepare_metadata_for_build_wheel(metadata_directory, config_settings)


def prepare_metadata_for_build_editable(
    metadata_directory: str, config_settings: Mapping[str, Any] | None = None
) -> str:
    _ensure_data_dir()
    return maturin.prepare_metadata_for_build_editable(metadata_directory, config_settings)


def build_sdist(sdist_directory: str, config_settings: Mapping[str, Any] | None = None) -> str:
    _ensure_data_dir()
    name = maturin.build_sdist(sdist_directory, config_settings)
    try:
        restore_root_manifest(Path(sdist_directory, name), Path("Cargo.toml").read_bytes())
    except BuildError as e:
        sys.exit(f"ferricorn: {e}")
    return name


def restore_root_manifest(sdist: Path, manifest: bytes) -> None:
    """Rewrites `sdist` with `manifest` as its top Cargo.toml (the workspace with
    its root package, the front). The front's sources must be in it already."""
    with tarfile.open(sdist, "r:gz") as tar:
        members = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]
    top = members[0][0].name.split("/")[0]
    names = {m.name for m, _ in members}
    for needed in (f"{top}/Cargo.toml", f"{top}/src/main.rs"):
        if needed not in names:
            raise BuildError(f"{sdist.name} has no {needed}: see [tool.maturin] include")
    rewritten = sdist.with_name(sdist.name + ".part")
    with tarfile.open(rewritten, "w:gz", format=tarfile.PAX_FORMAT) as out:
        for member, content in members:
            if member.name == f"{top}/Cargo.toml":
                content = manifest
                member.size = len(content)
            out.addfile(member, io.BytesIO(content) if content is not None else None)
    rewritten.replace(sdist)
