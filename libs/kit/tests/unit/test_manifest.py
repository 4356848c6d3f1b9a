"""services.toml through flotilla_kit.manifest: the repository's own loads, is found from
any folder below the root, and a wrong one is refused with the file and the field named."""

from __future__ import annotations

from pathlib import Path

import pytest

from flotilla_kit.manifest import (
    MANIFEST_FILE,
    ManifestError,
    find_manifest,
    load_manifest,
    parse_manifest,
)

ROOT = Path(__file__).resolve().parents[4]
REAL = (ROOT / MANIFEST_FILE).read_text()


def test_the_repositorys_manifest_loads_in_start_order_with_the_gateway_last() -> None:
    manifest = load_manifest()
    assert manifest.names == (
        "auth", "accounts", "payments", "inventory", "orders", "billing", "web", "gateway",
    )  # fmt: skip
    assert manifest.gateway.name == "gateway"
    assert manifest.gateway.framework == "gateway"
    assert manifest.gateway.metrics_port == 9443
    assert [s.name for s in manifest.backends] == list(manifest.names[:-1])
    assert {s.framework for s in manifest.backends} == {"fastapi", "django"}
    assert manifest.folders[:2] == ("libs/kit", "proto")
    assert manifest.folders[-1] == "cli"
    assert manifest["accounts"].sharded
    assert manifest["orders"].consumes == (
        "flotilla.orders.>",
        "flotilla.payments.transfer_committed.orders",
    )
    with pytest.raises(KeyError, match=r"services.toml names no service 'shipping'"):
        manifest["shipping"]


def test_build_arguments_leave_out_the_dockerfiles_defaults() -> None:
    manifest = load_manifest()
    assert manifest["auth"].build_args == {"SERVICE": "auth"}
    assert manifest["accounts"].build_args == {
        "SERVICE": "accounts", "PROTO": "true", "GRPC_PORT": "9000",
    }  # fmt: skip
    assert manifest["gateway"].build_args == {"SERVICE": "gateway", "PORT": "8443"}


def test_it_is_found_from_a_folder_below_the_root_and_missing_is_said(tmp_path: Path) -> None:
    assert find_manifest(ROOT / "services" / "orders" / "src") == ROOT / MANIFEST_FILE
    (tmp_path / MANIFEST_FILE).write_text(REAL)
    nested = tmp_path / "services" / "billing"
    nested.mkdir(parents=True)
    assert find_manifest(nested) == tmp_path / MANIFEST_FILE
    assert load_manifest(find_manifest(nested)).names == load_manifest().names
    with pytest.raises(ManifestError, match=r"services.toml not found in .* or above"):
        find_manifest(Path("/"))
    with pytest.raises(ManifestError, match=r"cannot be read"):
        load_manifest(tmp_path / "elsewhere.toml")


def _broken(old: str, new: str) -> str:
    assert old in REAL, old
    return REAL.replace(old, new, 1)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        # a field of a service: the service by index and name, then the field
        (
            'name = "payments"\nfolder = "services/payments"\npackage = "flotilla_payments"\n',
            'name = "payments"\nfolder = "services/payments"\npackage = "flotilla_payments"\n'
            'grpc_port = "nine"\n',
            r"services.toml: services\[2\] \(payments\).grpc_port: Input should be a valid integer",
        ),
        (
            'name = "auth"\n',
            'name = "auth"\ndatabse = true\n',
            r"services\[0\] \(auth\).databse: Extra inputs are not permitted",
        ),
        (
            'framework = "fastapi"\nhttp_port = 8000\ndatabase = true\n\n',
            'framework = "pyramid"\nhttp_port = 8000\ndatabase = true\n\n',
            r"services\[0\] \(auth\).framework: Input should be 'fastapi', 'flask', 'django'",
        ),
        ("http_port = 8443", "http_port = 70000", r"services\[7\] \(gateway\).http_port"),
        ('folder = "services/auth"', 'folder = "/srv/auth"', r"\(auth\).folder: .*not a folder"),
        ('publishes = ["stock_changed"]\n', "", r"\(inventory\): .*relay needs"),
        ('role = "service:orders"', 'role = "service:payments"', r"\(orders\): .*role must be"),
        ('package = "flotilla_auth"', 'package = "auth"', r"\(auth\): .*package must be"),
        ('consumes = ["flotilla.orders.>"', 'consumes = ["orders"', r"\(orders\).consumes"),
        ('"ledger:post"', '"ledger"', r"\(payments\).permissions: .*resource:action"),
        # the whole list
        (
            'name = "inventory"\nfolder = "services/inventory"\npackage = "flotilla_inventory"',
            'name = "auth"\nfolder = "services/auth"\npackage = "flotilla_auth"',
            r"services.toml: services: .*named twice: auth",
        ),
        ('framework = "gateway"', 'framework = "fastapi"', r"services: .*not 0"),
        ("[workspace]\n", "[workspaces]\n", r"services.toml: workspaces: Extra inputs"),
        ("[[services]]", "[[services]", r"services.toml: not valid TOML"),
    ],
)
def test_a_wrong_manifest_is_refused_naming_the_file_and_the_field(
    old: str, new: str, message: str
) -> None:
    with pytest.raises(ManifestError, match=message):
        parse_manifest(_broken(old, new), Path("services.toml"))


def test_the_gateway_comes_last_and_one_service_at_most_is_sharded() -> None:
    head, gateway = REAL.split('[[services]]\nname = "gateway"')
    first, rest = head.split("[[services]]", 1)
    moved = first + '[[services]]\nname = "gateway"' + gateway + "\n[[services]]" + rest
    with pytest.raises(ManifestError, match="the gateway comes last"):
        parse_manifest(moved)
    two = _broken('name = "payments"\n', 'name = "payments"\nsharded = true\n')
    with pytest.raises(ManifestError, match="one sharded service at most, not accounts, payments"):
        parse_manifest(two)
