"""Build the analysis runtime image offline, caching every step.

Steps (each skipped when its result exists):

1. base image: ``python:3.11-slim`` if present or pullable, else ``sandbox-base:bookworm``
   made with ``debootstrap`` from the Debian mirror named in the host's own apt configuration;
2. wheels: ``pip download`` on the host (pip's own configuration) into ``images/.build/wheels``;
3. image: ``images/Dockerfile`` built with the network off, labelled with a hash of its inputs,
   so an unchanged image is returned at once and a changed SDK rebuilds it.

CLI: ``python -m runners.image [--tag TAG] [--rebuild]`` prints the image id.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker
import docker.errors

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "images"
BUILD = IMAGES / ".build"
DEFAULT_TAG = "sandbox-analysis:latest"
UPSTREAM_BASE = "python:3.11-slim"
OFFLINE_BASE = "sandbox-base:bookworm"
SUITE = "bookworm"  # ships Python 3.11, the version the wheels are downloaded for
HASH_LABEL = "sandbox.build-hash"
APT_SOURCES = Path("/etc/apt/sources.list")
APT_SOURCES_DIR = Path("/etc/apt/sources.list.d")


def debian_mirror() -> tuple[str, str | None]:
    """Return (mirror URL, keyring or None) from the host's apt configuration.

    Registry hosts are never written into the repository, so the mirror is read here.
    """
    if url := os.environ.get("SANDBOX_DEBIAN_MIRROR"):
        return url, None
    for path in sorted(APT_SOURCES_DIR.glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text()):
            fields = {}
            for line in stanza.splitlines():
                key, sep, value = line.partition(":")
                if sep and not line.startswith(("#", " ", "\t")):
                    fields[key.strip().lower()] = value.strip()
            suites = fields.get("suites", "")
            if "deb" in fields.get("types", "").split() and "uris" in fields and "-security" not in suites:
                return fields["uris"].split()[0], fields.get("signed-by")
    if APT_SOURCES.exists():
        for line in APT_SOURCES.read_text().splitlines():
            m = re.match(r"deb\s+(\[(?P<opts>[^]]*)\]\s+)?(?P<url>\S+)\s+(?P<suite>\S+)", line)
            if m and "-security" not in m["suite"]:
                key = re.search(r"signed-by=(\S+)", m["opts"] or "")
                return m["url"], key[1] if key else None
    raise RuntimeError(
        "no Debian mirror in /etc/apt: set SANDBOX_DEBIAN_MIRROR to a bookworm mirror URL"
    )


def _image_id(client: docker.DockerClient, ref: str) -> str | None:
    try:
        return client.images.get(ref).id
    except docker.errors.ImageNotFound:
        return None


def ensure_base(client: docker.DockerClient) -> str:
    """Return the base image reference, making the offline base when nothing else exists."""
    for ref in (UPSTREAM_BASE, OFFLINE_BASE):
        if _image_id(client, ref):
            return ref
    try:
        client.images.pull(UPSTREAM_BASE)
        return UPSTREAM_BASE
    except docker.errors.APIError as exc:
        log.info("cannot pull %s (%s); making %s with debootstrap", UPSTREAM_BASE, exc, OFFLINE_BASE)
    if not shutil.which("debootstrap"):
        raise RuntimeError("no base image and no debootstrap: apt-get install debootstrap")
    mirror, keyring = debian_mirror()
    BUILD.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=BUILD, prefix="rootfs-") as tmp:
        root = Path(tmp) / "rootfs"
        cmd = ["debootstrap", "--variant=minbase", "--include=python3,python3-venv"]
        cmd += [f"--keyring={keyring}"] if keyring else []
        subprocess.run([*cmd, SUITE, str(root), mirror], check=True, stdout=subprocess.DEVNULL)
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man"):
            shutil.rmtree(root / junk, ignore_errors=True)
        tar = Path(tmp) / "rootfs.tar"
        subprocess.run(["tar", "-C", str(root), "--numeric-owner", "-cf", str(tar), "."], check=True)
        repo, tag = OFFLINE_BASE.split(":")
        client.api.import_image_from_file(str(tar), repository=repo, tag=tag)
    return OFFLINE_BASE


def _wheel_platforms() -> list[str]:
    # pip < 24 does not expand a manylinux tag to older ones: list them (bookworm has glibc 2.36).
    return [f"manylinux_2_{minor}_x86_64" for minor in range(36, 16, -1)] + ["manylinux2014_x86_64"]


def ensure_wheels() -> Path:
    """Download the image's wheels for CPython 3.11 on the host; skip when already done."""
    req = IMAGES / "requirements.txt"
    wheels = BUILD / "wheels"
    stamp = wheels / ".requirements.sha256"
    digest = hashlib.sha256(req.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return wheels
    shutil.rmtree(wheels, ignore_errors=True)
    wheels.mkdir(parents=True)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
           "--python-version", "3.11", "--implementation", "cp", "--dest", str(wheels), "-r", str(req)]
    for platform in _wheel_platforms():
        cmd += ["--platform", platform]
    subprocess.run(cmd, check=True)
    stamp.write_text(digest)
    return wheels


def sdk_files() -> dict[str, Path]:
    """The SDK shipped in the image: ``sandbox/__init__.py`` and ``sandbox/sdk/`` as they are now."""
    pkg = REPO / "sandbox"
    files = {"sandbox/__init__.py": pkg / "__init__.py"}
    sdk = pkg / "sdk"
    if sdk.is_dir():
        for path in sorted(sdk.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                files[str(path.relative_to(REPO))] = path
    return files


def copy_sdk(dest: Path) -> None:
    """Copy the SDK files into ``dest`` (a site-packages-like folder)."""
    for rel, src in sdk_files().items():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)


def _stage_context(wheels: Path) -> Path:
    ctx = BUILD / "context"
    shutil.rmtree(ctx, ignore_errors=True)
    ctx.mkdir(parents=True)
    shutil.copyfile(IMAGES / "Dockerfile", ctx / "Dockerfile")
    shutil.copyfile(IMAGES / "requirements.txt", ctx / "requirements.txt")
    shutil.copytree(wheels, ctx / "wheels", copy_function=os.link, ignore=shutil.ignore_patterns(".*"))
    copy_sdk(ctx / "sdk")
    return ctx


def _inputs_hash(base_id: str, wheels: Path) -> str:
    h = hashlib.sha256(base_id.encode())
    for path in (IMAGES / "Dockerfile", IMAGES / "requirements.txt"):
        h.update(path.read_bytes())
    h.update("\n".join(sorted(p.name for p in wheels.glob("*.whl"))).encode())
    for rel, path in sdk_files().items():
        h.update(rel.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def ensure_image(tag: str = DEFAULT_TAG, rebuild: bool = False) -> str:
    """Return the id (``sha256:...``) of the analysis image, building only what changed."""
    client = docker.from_env(timeout=600)
    base = ensure_base(client)
    wheels = ensure_wheels()
    digest = _inputs_hash(_image_id(client, base) or base, wheels)
    if not rebuild:
        try:
            image = client.images.get(tag)
            if image.labels.get(HASH_LABEL) == digest:
                return image.id
        except docker.errors.ImageNotFound:
            pass
    ctx = _stage_context(wheels)
    started = time.monotonic()
    image, _ = client.images.build(
        path=str(ctx), tag=tag, buildargs={"BASE": base}, labels={HASH_LABEL: digest},
        network_mode="none", pull=False, rm=True, forcerm=True,
    )
    log.info("built %s (%s) in %.0f s", tag, image.id, time.monotonic() - started)
    return image.id


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build the sandbox analysis image offline.")
    parser.add_argument("--tag", default=DEFAULT_TAG)
    parser.add_argument("--rebuild", action="store_true", help="build even if up to date")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(ensure_image(args.tag, args.rebuild))


if __name__ == "__main__":
    main()
