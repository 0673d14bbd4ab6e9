"""The Dockerfile built without Docker (buildah, RECIPES.md section 6) and the image run on loopback.

No registry is reachable here, so the Dockerfile's literal base is stood in for by a Debian bookworm root
with python3 made by mmdebstrap and tagged with the base's exact name. That stand-in is cached in its own
buildah storage under ~/.cache/stratochat-deploy (about 30 s to make, once per machine); the application
image is built fresh each run (about 25 s) and removed afterwards.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.client import Api
from tests.deploy.cfn import ROOT
from tests.services.server import free_port

# Cold (no cached stand-in) about a minute on an idle machine; bounded well above that for a loaded one.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "stratochat-deploy"
# Bump when the stand-in's recipe changes, so cached ones are rebuilt.
STANDIN_REVISION = "1"
STANDIN_PACKAGES = "python3,python3-venv,ca-certificates"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def _need_tools() -> None:
    missing = [t for t in ("buildah", "mmdebstrap") if shutil.which(t) is None]
    if missing:
        message = f"{' and '.join(missing)} not installed (./scripts/test installs them)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    if os.geteuid() != 0:
        pytest.skip("buildah with vfs storage and chroot isolation needs root here")


def buildah(*args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    """buildah on this test's own storage (vfs: no overlay or fuse needed), chroot isolation."""
    cmd = ["buildah", "--root", str(CACHE / "storage"), "--runroot", str(CACHE / "run"), "--storage-driver", "vfs"]
    done = subprocess.run(
        [*cmd, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "BUILDAH_ISOLATION": "chroot"},
    )
    if check and done.returncode != 0:
        raise AssertionError(f"buildah {' '.join(args[:3])} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done


def base_image() -> str:
    """The one image the Dockerfile's stages start FROM, written literally."""
    names = set(re.findall(r"^FROM\s+(\S+)", (ROOT / "Dockerfile").read_text(), re.M))
    assert len(names) == 1, names
    return names.pop()


def _mirror() -> str:
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        found = re.search(r"^URIs:\s*(\S+)", sources.read_text(), re.M)
        if found:
            return found.group(1)
    return "http://deb.debian.org/debian"


def ensure_standin(name: str) -> None:
    """Tag a Debian python3 root as ``name`` unless a stand-in of this revision is already cached."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another session building the same stand-in waits here
        found = buildah("inspect", "--type", "image", name, check=False)
        if found.returncode == 0:
            labels = json.loads(found.stdout).get("Docker", {}).get("config", {}).get("Labels") or {}
            if labels.get("stratochat.standin") == STANDIN_REVISION:
                return
        work = CACHE / "standin"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        excludes = [f"--dpkgopt=path-exclude=/usr/share/{d}/*" for d in ("doc", "man", "info", "locale")]
        done = subprocess.run(
            ["mmdebstrap", "--quiet", "--variant=minbase", f"--include={STANDIN_PACKAGES}", *excludes,
             "bookworm", str(work / "rootfs.tar"), _mirror()],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        (work / "Containerfile").write_text(
            f'FROM scratch\nADD rootfs.tar /\nLABEL stratochat.standin="{STANDIN_REVISION}"\nCMD ["python3"]\n'
        )
        buildah("bud", "--layers=false", "--format", "docker", "-t", name, str(work), timeout=300)
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The application image, built from the repository's Dockerfile and context."""
    _need_tools()
    ensure_standin(base_image())
    tag = f"localhost/stratochat-test:{uuid.uuid4().hex[:12]}"
    conf = tmp_path_factory.mktemp("pip") / "pip.conf"
    # Lets pip inside RUN trust this machine's CA bundle without changing the Dockerfile.
    conf.write_text(f"[global]\ncert = {CA_BUNDLE}\n")
    mounts = ["-v", f"{CA_BUNDLE}:{CA_BUNDLE}:ro", "-v", f"{conf}:/etc/pip.conf:ro"]
    buildah("bud", "--pull=never", "--format", "docker", "--layers=false", *mounts, "-t", tag, str(ROOT), timeout=420)
    try:
        yield tag
    finally:
        buildah("rmi", "--force", tag, check=False)


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            for child in map(int, children.read_text().split()):
                out += [child, *_descendants(child)]
    return out


class Container:
    """One `buildah run` of the image's entrypoint on loopback."""

    def __init__(self, image: str, log: Path) -> None:
        self.name = f"stratochat-test-{uuid.uuid4().hex[:8]}"
        buildah("from", "--pull=never", "--name", self.name, image)
        config = json.loads(buildah("inspect", "--type", "image", image).stdout)["Docker"]["config"]
        self.entrypoint: list[str] = config["Entrypoint"]
        self.log = log
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Container:
        self.port = free_port()
        # The entrypoint as the image states it, with the bind address moved from 0.0.0.0 to loopback.
        args = [*self.entrypoint, "--host", "127.0.0.1", "--port", str(self.port)]
        cmd = ["buildah", "--root", str(CACHE / "storage"), "--runroot", str(CACHE / "run"), "--storage-driver", "vfs"]
        out = open(self.log, "ab")  # noqa: SIM115 (closed with the process)
        self.proc = subprocess.Popen(
            [*cmd, "run", "--network", "host", self.name, "--", *args],
            stdout=out, stderr=out, env={**os.environ, "BUILDAH_ISOLATION": "chroot"},
        )  # fmt: skip
        out.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"container exited: {self.log.read_text()[-3000:]}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            time.sleep(0.2)
        raise TimeoutError(f"the container did not answer /readyz: {self.log.read_text()[-3000:]}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def server_pid(self) -> int:
        """The server process itself (buildah's chroot runner and exec helper sit above it)."""
        assert self.proc is not None
        for pid in reversed(_descendants(self.proc.pid)):
            with contextlib.suppress(OSError):
                if b"stratochat" in Path(f"/proc/{pid}/cmdline").read_bytes() and "python" in os.readlink(
                    f"/proc/{pid}/exe"
                ):
                    return pid
        raise AssertionError("no server process under buildah run")

    def exec(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        flags = [f"--env={k}={v}" for k, v in (env or {}).items()]
        return buildah("run", "--network", "host", *flags, self.name, "--", *args, check=False)

    def stop(self, timeout: float = 40) -> float:
        """SIGTERM the server (what ECS sends) and return how long it took to exit."""
        assert self.proc is not None
        start = time.monotonic()
        if self.proc.poll() is None:
            with contextlib.suppress(AssertionError, ProcessLookupError):
                os.kill(self.server_pid(), signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                raise
        return time.monotonic() - start

    def remove(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            for pid in _descendants(self.proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.proc.kill()
            self.proc.wait(timeout=10)
        buildah("rm", self.name, check=False)


def _locked_versions() -> dict[str, str]:
    text = (ROOT / "deploy" / "requirements.txt").read_text()
    return {m[1].lower().replace("_", "-"): m[2] for m in re.finditer(r"^([A-Za-z0-9_.-]+)==(\S+)", text, re.M)}


async def test_image_builds_runs_as_non_root_serves_and_stores_a_message(image: str, tmp_path: Path) -> None:
    """Built from the Dockerfile, the image runs `stratochat serve` as uid 10001, answers /readyz and its health
    check, has exactly the locked packages and no compiler, stores a message, drains on SIGTERM and keeps
    the message across a restart."""
    config: dict[str, Any] = json.loads(buildah("inspect", "--type", "image", image).stdout)["Docker"]["config"]
    assert config["User"] == "10001:10001" and config["StopSignal"] == "SIGTERM"
    assert config["Entrypoint"] == ["stratochat", "serve"] and config["Healthcheck"]["Test"][0] == "CMD"
    assert "STRATOCHAT_HOST=0.0.0.0" in config["Env"]

    box = Container(image, tmp_path / "container.log")
    try:
        box.start()
        status = Path(f"/proc/{box.server_pid()}/status").read_text()
        assert re.search(r"^Uid:\s+10001\s", status, re.M), status

        health = box.exec(*config["Healthcheck"]["Test"][1:], env={"STRATOCHAT_PORT": str(box.port)})
        assert health.returncode == 0, health.stderr

        listing = box.exec(
            "python", "-c",
            "import json, shutil, importlib.metadata as m; print(json.dumps({'compilers': [c for c in ('gcc', 'cc', "
            "'make') if shutil.which(c)], 'dists': {d.metadata['Name'].lower().replace('_', '-'): d.version "
            "for d in m.distributions()}}))",
        )  # fmt: skip
        assert listing.returncode == 0, listing.stderr
        found = json.loads(listing.stdout.strip().splitlines()[-1])
        assert found["compilers"] == []
        locked = _locked_versions()
        installed = {k: v for k, v in found["dists"].items() if k not in ("pip", "setuptools", "stratochat")}
        assert installed == {k: v for k, v in locked.items() if k in installed}
        assert set(locked) - set(installed) <= {"async-timeout"}  # its marker: python < 3.11.3 only

        async with Api(box.url) as alice, Api(box.url) as bob:
            await alice.signup()
            await bob.signup()
            chat = await alice.chat_with(bob.username)
            sent = await alice.post(f"/api/chats/{chat['chat_id']}/messages", json={"content": "from the image"})
            assert sent.status_code == 201, sent.text
            assert [m["content"] for m in (await bob.history(chat["chat_id"]))["messages"]] == ["from the image"]
            token = alice.token

        took = box.stop()
        assert took < 30, f"the server took {took:.1f} s to stop after SIGTERM"
        assert "Finished server process" in box.log.read_text()

        box.start()
        async with Api(box.url, token=token) as again:
            assert [m["content"] for m in (await again.history(chat["chat_id"]))["messages"]] == ["from the image"]
        box.stop()
    finally:
        box.remove()
