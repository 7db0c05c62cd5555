"""Build the Go programs under ``tests/interop/go/`` against Debian's govmomi.

Debian ships govmomi as Go source (``golang-github-vmware-govmomi-dev``,
under ``/usr/share/gocode``) next to the Go toolchain (``golang-go``); CI
installs both (``.ci/run``). Programs are built in GOPATH mode against that
tree -- no module download, no network -- with Go's build cache under the
checkout's git-ignored ``.cache/`` so that only the first build of a machine
compiles govmomi (about a minute).

Where Go or govmomi is missing, :func:`missing` says what to install; tests
then skip with that message, unless ``NOVA_VSPHERE_REQUIRE_GO`` is set (CI
sets it: there a missing toolchain is a broken CI, not a reason to skip).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
#: The Go programs of the interop tests and benchmarks, one directory each.
SOURCES = os.path.join(REPO, "tests", "interop", "go")
#: Debian's GOPATH holding govmomi and its dependencies.
GOPATH = "/usr/share/gocode"
GOVMOMI = os.path.join(GOPATH, "src", "github.com", "vmware", "govmomi")
#: Go's build cache (compiled govmomi packages), kept between runs.
CACHE = os.path.join(REPO, ".cache", "go-build")
#: Set (to anything but "" or "0") to fail instead of skipping when Go is missing.
REQUIRE_ENV = "NOVA_VSPHERE_REQUIRE_GO"
BUILD_TIMEOUT = 900


class GoBuildError(Exception):
    """``go build`` failed: the compiler's output is the message."""


def required() -> bool:
    return os.environ.get(REQUIRE_ENV, "") not in ("", "0")


def missing() -> str | None:
    """Why Go programs cannot be built here (what to install), or None."""
    if shutil.which("go") is None:
        return "the Go toolchain is not installed (Debian: apt-get install golang-go)"
    if not os.path.isdir(os.path.join(GOVMOMI, "simulator")):
        return (f"govmomi is not installed in {GOPATH} "
                "(Debian: apt-get install golang-github-vmware-govmomi-dev)")
    return None


def environment(cache_dir: str = CACHE) -> dict[str, str]:
    """The environment ``go build`` runs in: GOPATH mode on Debian's tree."""
    env = dict(os.environ)
    env.update(GOPATH=GOPATH, GO111MODULE="off", GOCACHE=cache_dir, GOFLAGS="",
               # Pure-Go networking: no C compiler needed (CI installs none).
               CGO_ENABLED="0")
    return env


def build(program: str, output_dir: str, cache_dir: str = CACHE) -> str:
    """Compile ``tests/interop/go/<program>`` into ``output_dir``; returns the binary's path.

    Raises :class:`GoBuildError` with the compiler's output when it fails.
    """
    source = os.path.join(SOURCES, program)
    if not os.path.isdir(source):
        raise GoBuildError(f"no Go program {program!r} in {SOURCES}")
    os.makedirs(cache_dir, exist_ok=True)
    os.makedirs(output_dir, exist_ok=True)
    binary = os.path.join(output_dir, program)
    partial = f"{binary}.{os.getpid()}.partial"
    try:
        result = subprocess.run(["go", "build", "-o", partial, "."], cwd=source,
                                env=environment(cache_dir), capture_output=True, text=True,
                                timeout=BUILD_TIMEOUT, check=False)
    except subprocess.TimeoutExpired as exc:
        raise GoBuildError(f"go build of {program} took over {BUILD_TIMEOUT} s") from exc
    if result.returncode != 0:
        raise GoBuildError(f"go build of {program} failed:\n{result.stdout}{result.stderr}")
    os.replace(partial, binary)  # readers never see a half-written binary
    return binary


class Builder:
    """Builds each program once (per test session or benchmark run), thread-safe.

    A failed build is remembered too: the tests that need the program all
    fail with the compiler's output instead of compiling again each.
    """

    def __init__(self, output_dir: str, cache_dir: str = CACHE) -> None:
        self.output_dir = output_dir
        self.cache_dir = cache_dir
        self._built: dict[str, str | GoBuildError] = {}
        self._lock = threading.Lock()

    def __call__(self, program: str) -> str:
        with self._lock:
            if program not in self._built:
                try:
                    self._built[program] = build(program, self.output_dir, self.cache_dir)
                except GoBuildError as exc:
                    self._built[program] = exc  # every test that needs it fails alike
            outcome = self._built[program]
        if isinstance(outcome, GoBuildError):
            raise outcome
        return outcome
