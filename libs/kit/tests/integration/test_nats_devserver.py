"""The embedded NATS server: a real one from the wheel, with JetStream, keeping its streams
across a restart on the same port, and gone when stopped or when its owner dies."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import nats
import psutil
from nats.js import api

from flotilla_kit.devservers import EmbeddedNats, nats_server_binary


def test_the_binary_comes_from_the_wheel_in_this_environment() -> None:
    binary = nats_server_binary()
    assert binary.parent == Path(sys.executable).parent
    version = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("nats-server: v2.")


async def test_jetstream_keeps_streams_and_messages_across_a_restart(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path / "nats")
    server.start()
    url, first_pid = server.url, server.pid
    try:
        client = await nats.connect(url, allow_reconnect=False)
        js = client.jetstream()
        await js.add_stream(name="T", subjects=["t.>"], storage=api.StorageType.FILE)
        ack = await js.publish("t.one", b"kept")
        await client.close()

        server.stop()
        assert first_pid is not None
        assert not psutil.pid_exists(first_pid)
        stopped_pid = server.pid
        server.start()
        assert stopped_pid is None
        assert server.url == url  # same port: clients reconnect to the same address
        assert server.pid not in (None, first_pid)

        client = await nats.connect(url, allow_reconnect=False)
        message = await client.jetstream().get_msg("T", ack.seq)
        assert (message.subject, message.data) == ("t.one", b"kept")
        await client.close()
    finally:
        server.stop()


def test_the_server_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    # An owner that starts a server, says its pid, and is then killed with SIGKILL.
    with subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from pathlib import Path\n"
            "from flotilla_kit.devservers import EmbeddedNats\n"
            f"s = EmbeddedNats(Path({str(tmp_path / 'owned')!r}))\n"
            "s.start()\n"
            "print(s.pid, flush=True)\n"
            "time.sleep(300)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    ) as owner:
        assert owner.stdout is not None
        pid = int(owner.stdout.readline())
        assert psutil.pid_exists(pid)
        owner.kill()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)  # the kernel signals the child; nothing to await from here
    assert not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
