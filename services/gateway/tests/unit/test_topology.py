from __future__ import annotations

import os
from pathlib import Path

from flotilla_gateway.topology import InstanceRef, TopologyChange, TopologyWatcher, diff
from flotilla_kit.topology import Instance, Topology


def topology(**services: list[tuple[str, str]]) -> Topology:
    return Topology(
        services={
            service: [Instance(name=name, url=url) for name, url in instances]
            for service, instances in services.items()
        }
    )


def test_diff_reports_added_and_removed_instances() -> None:
    old = topology(auth=[("auth-0", "http://a:1")], accounts=[("accounts-0", "http://b:1")])
    new = topology(
        auth=[("auth-0", "http://a:1"), ("auth-1", "http://a:2")], accounts=[], orders=[]
    )
    assert diff(old, new) == TopologyChange(
        added=(InstanceRef("auth", "auth-1", "http://a:2"),),
        removed=(InstanceRef("accounts", "accounts-0", "http://b:1"),),
    )


def test_a_moved_instance_is_removed_and_added() -> None:
    change = diff(
        topology(auth=[("auth-0", "http://a:1")]), topology(auth=[("auth-0", "http://a:9")])
    )
    assert change.removed == (InstanceRef("auth", "auth-0", "http://a:1"),)
    assert change.added == (InstanceRef("auth", "auth-0", "http://a:9"),)


def test_an_instance_moved_to_another_shard_is_removed_and_added() -> None:
    before = Topology(services={"accounts": [Instance(name="a-0", url="http://a:1", shard=0)]})
    after = Topology(services={"accounts": [Instance(name="a-0", url="http://a:1", shard=1)]})
    change = diff(before, after)
    assert change.removed == (InstanceRef("accounts", "a-0", "http://a:1", 0),)
    assert change.added == (InstanceRef("accounts", "a-0", "http://a:1", 1),)
    # Sharded and unsharded references sort together.
    mixed = Topology(
        services={
            "accounts": [Instance(name="a-1", url="http://a:2", shard=1)],
            "auth": [Instance(name="auth-0", url="http://b:1")],
        }
    )
    assert [r.name for r in diff(Topology(), mixed).added] == ["a-1", "auth-0"]


def test_no_difference_is_a_falsy_change() -> None:
    same = topology(auth=[("auth-0", "http://a:1")])
    assert not diff(same, same)


def test_watcher_reads_each_new_version_once(tmp_path: Path) -> None:
    path = tmp_path / "topology.json"
    watcher = TopologyWatcher(path)
    assert watcher.poll() is None  # not written yet

    topology(auth=[("auth-0", "http://a:1")]).write(path)
    first = watcher.poll()
    assert first is not None
    assert first.added == (InstanceRef("auth", "auth-0", "http://a:1"),)
    assert watcher.poll() is None  # unchanged

    topology(auth=[("auth-1", "http://a:2")]).write(path)
    second = watcher.poll()
    assert second is not None
    assert second.added == (InstanceRef("auth", "auth-1", "http://a:2"),)
    assert second.removed == (InstanceRef("auth", "auth-0", "http://a:1"),)


def test_watcher_notices_an_in_place_rewrite(tmp_path: Path) -> None:
    path = tmp_path / "topology.json"
    topology(auth=[("auth-0", "http://a:1")]).write(path)
    watcher = TopologyWatcher(path)
    watcher.poll()
    path.write_text(
        topology(auth=[("auth-0", "http://a:1"), ("auth-1", "http://a:2")]).model_dump_json()
    )
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    change = watcher.poll()
    assert change is not None
    assert [r.name for r in change.added] == ["auth-1"]


def test_unreadable_or_inconsistent_versions_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "topology.json"
    topology(auth=[("auth-0", "http://a:1")]).write(path)
    watcher = TopologyWatcher(path)
    watcher.poll()

    path.write_text("{not json")
    assert watcher.poll() is None
    path.write_text(
        '{"services": {"auth": [{"name": "x", "url": "u"}, {"name": "x", "url": "v"}]}}'
    )
    assert watcher.poll() is None
    assert [i.name for i in watcher.current.services["auth"]] == ["auth-0"]

    topology(auth=[("auth-2", "http://a:3")]).write(path)
    change = watcher.poll()
    assert change is not None
    assert [r.name for r in change.removed] == ["auth-0"]
    assert [r.name for r in change.added] == ["auth-2"]


def test_an_instance_whose_tls_name_changed_is_removed_and_added() -> None:
    url = "https://10.0.0.5:8443"
    before = Topology(services={"auth": [Instance(name="auth-0", url=url, tls_name="a.svc")]})
    after = Topology(services={"auth": [Instance(name="auth-0", url=url, tls_name="b.svc")]})
    change = diff(before, after)
    assert change.removed == (InstanceRef("auth", "auth-0", url, None, "a.svc"),)
    assert change.added == (InstanceRef("auth", "auth-0", url, None, "b.svc"),)
    # Written by the launcher without one, it reads back as None: the URL's host.
    assert Instance.model_validate_json('{"name": "auth-0", "url": "https://a:1"}').tls_name is None
