"""``clouds.yaml`` for the Placement sync: where it is looked for, ``secure.yaml`` merged over it,
and each entry read the way openstacksdk's ``openstack.config`` (the reference loader) reads it,
which checks every case below in its own venv (marker ``placement_clients``)."""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path
from typing import Any

import pytest

from exporters.placement_auth import Connection, adapter_for, connection_for, load_cloud
from resmon.config import ConfigError, PlacementSettings
from resmon.logs import configure_logging

from .tools import HERE, tool_venv

# name -> (clouds.yaml, secure.yaml or None); every entry is read by both loaders.
CASES: dict[str, tuple[str, str | None]] = {
    "password": ("""
clouds:
  prod:
    auth:
      auth_url: https://keystone.example:5000/v3
      username: resmon
      password: s3cret-pw
      project_name: service
      user_domain_name: Default
      project_domain_name: Default
    region_name: RegionTwo
    interface: internal
    cacert: /etc/ssl/certs/ca-certificates.crt
""", None),
    "old-names-and-insecure": ("""
clouds:
  legacy:
    auth_type: v3password
    auth:
      auth-url: https://keystone.example/v3
      username: resmon
    password: from-the-top-level
    tenant_name: admin
    domain_name: Users
    insecure: true
    endpoint_type: admin
""", None),
    "application-credential-in-secure-yaml": ("""
clouds:
  appcred:
    auth_type: v3applicationcredential
    auth:
      auth_url: https://keystone.example/v3
      application_credential_id: 0123abcd
    region_name: Ignored-when-regions-are-given
    regions:
      - name: East
      - West
    placement_interface: internal
""", """
clouds:
  appcred:
    auth:
      application_credential_secret: from-secure-yaml
"""),
    "token-endpoint-noauth": ("""
clouds:
  test:
    auth_type: token_endpoint
    auth:
      endpoint: http://127.0.0.1:8778
      token: admin
    placement_endpoint_override: http://127.0.0.1:8778
    verify: false
    cacert: /etc/ssl/certs/ca-certificates.crt
    cert: /etc/resmon/client.pem
    key: /etc/resmon/client.key
""", None),
    "none-with-a-default-auth-type": ("""
clouds:
  other:
    auth_type: password
    auth: {auth_url: http://k/v3, username: u, password: p, user_domain_id: default}
  bare:
    auth_type: none
    placement_endpoint_override: http://127.0.0.1:8080/placement
    region_name: One,Two
""", None),
    "region-name-list": ("""
clouds:
  listed:
    auth_type: none
    placement_endpoint_override: http://127.0.0.1:8080/placement
    region_name: [North, South]
""", None),
}  # fmt: skip
CLOUD_OF = {
    "password": "prod", "old-names-and-insecure": "legacy",
    "application-credential-in-secure-yaml": "appcred", "token-endpoint-noauth": "test",
    "none-with-a-default-auth-type": "bare", "region-name-list": "listed",
}  # fmt: skip


def files(tmp_path: Path, case: str) -> dict[str, str]:
    clouds, secure = CASES[case]
    (tmp_path / "clouds.yaml").write_text(clouds)
    env = {"OS_CLIENT_CONFIG_FILE": str(tmp_path / "clouds.yaml")}
    if secure is not None:
        (tmp_path / "secure.yaml").write_text(secure)
        env["OS_CLIENT_SECURE_FILE"] = str(tmp_path / "secure.yaml")
    else:
        env["OS_CLIENT_SECURE_FILE"] = str(tmp_path / "no-secure.yaml")
    env["XDG_CONFIG_HOME"] = str(tmp_path / "no-home")
    return env


def as_seen(connection: Connection) -> dict[str, Any]:
    cert = list(connection.cert) if isinstance(connection.cert, tuple) else connection.cert
    return {
        "auth_type": connection.auth_type, "auth": connection.auth,
        "region_name": connection.region_name or "", "interface": connection.interface,
        "endpoint": connection.endpoint, "verify": connection.verify, "cert": cert,
    }  # fmt: skip


EXPECTED = {
    "password": {
        "auth_type": "password",
        "auth": {"auth_url": "https://keystone.example:5000/v3", "username": "resmon",
                 "password": "s3cret-pw", "project_name": "service",
                 "user_domain_name": "Default", "project_domain_name": "Default"},
        "region_name": "RegionTwo", "interface": "internal", "endpoint": None,
        "verify": "/etc/ssl/certs/ca-certificates.crt", "cert": None,
    },
    "old-names-and-insecure": {
        "auth_type": "v3password",
        "auth": {"auth_url": "https://keystone.example/v3", "username": "resmon",
                 "password": "from-the-top-level", "project_name": "admin",
                 "user_domain_name": "Users", "project_domain_name": "Users"},
        "region_name": "", "interface": "admin", "endpoint": None, "verify": False,
        "cert": None,
    },
    "application-credential-in-secure-yaml": {
        "auth_type": "v3applicationcredential",
        "auth": {"auth_url": "https://keystone.example/v3",
                 "application_credential_id": "0123abcd",
                 "application_credential_secret": "from-secure-yaml"},
        "region_name": "East", "interface": "internal", "endpoint": None, "verify": True,
        "cert": None,
    },
    "token-endpoint-noauth": {
        "auth_type": "admin_token",
        "auth": {"endpoint": "http://127.0.0.1:8778", "token": "admin"},
        "region_name": "", "interface": "public", "endpoint": "http://127.0.0.1:8778",
        "verify": False, "cert": ["/etc/resmon/client.pem", "/etc/resmon/client.key"],
    },
    "none-with-a-default-auth-type": {
        "auth_type": "none", "auth": {}, "region_name": "One", "interface": "public",
        "endpoint": "http://127.0.0.1:8080/placement", "verify": True, "cert": None,
    },
    "region-name-list": {
        "auth_type": "none", "auth": {}, "region_name": "North", "interface": "public",
        "endpoint": "http://127.0.0.1:8080/placement", "verify": True, "cert": None,
    },
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_entry_maps_onto_keystoneauth1(tmp_path: Path, case: str) -> None:
    env = files(tmp_path, case)
    assert as_seen(load_cloud(CLOUD_OF[case], env)) == EXPECTED[case]


def test_the_search_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home, site_wide = tmp_path / "home", tmp_path / "cwd"
    (home / "openstack").mkdir(parents=True)
    site_wide.mkdir()
    monkeypatch.chdir(site_wide)
    env = {"XDG_CONFIG_HOME": str(home)}
    one = "clouds:\n  c:\n    auth_type: none\n    region_name: {}\n"
    (home / "openstack" / "clouds.yaml").write_text(one.format("from-home"))
    assert load_cloud("c", env).region_name == "from-home"
    # The working directory comes before the user's directory, and .yml counts.
    (site_wide / "clouds.yml").write_text(one.format("from-cwd"))
    assert load_cloud("c", env).region_name == "from-cwd"
    # OS_CLIENT_CONFIG_FILE before both.
    (tmp_path / "chosen.yaml").write_text(one.format("chosen"))
    assert load_cloud("c", {**env, "OS_CLIENT_CONFIG_FILE": str(tmp_path / "chosen.yaml")}
                      ).region_name == "chosen"  # fmt: skip
    # secure.yaml next to it is merged over it.
    (site_wide / "secure.yaml").write_text("clouds:\n  c:\n    region_name: from-secure\n")
    assert load_cloud("c", env).region_name == "from-secure"


@pytest.mark.parametrize(
    ("clouds", "message"),
    [
        ("clouds: [", r"clouds.yaml: not valid YAML: "),
        ("- a list", r"clouds.yaml: is empty or not a mapping"),
        ("clouds:\n  a: {}\n  b: {}\n",
         r"\[placement\] cloud 'c': not in .*clouds.yaml \(clouds: a, b\)"),
        ("clouds:\n  c:\n    profile: vexxhost\n", r"vendor profiles are not read"),
    ],
)  # fmt: skip
def test_a_bad_file_is_one_line(tmp_path: Path, clouds: str, message: str) -> None:
    (tmp_path / "clouds.yaml").write_text(clouds)
    env = {"OS_CLIENT_CONFIG_FILE": str(tmp_path / "clouds.yaml"),
           "XDG_CONFIG_HOME": str(tmp_path / "none")}  # fmt: skip
    with pytest.raises(ConfigError, match=message) as caught:
        load_cloud("c", env)
    assert "\n" not in str(caught.value)


def test_no_file_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"\[placement\] cloud 'c': no clouds.yaml found"):
        load_cloud("c", {"XDG_CONFIG_HOME": str(tmp_path / "none")})


def test_placement_settings_override_the_entry_and_secrets_are_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in files(tmp_path, "password").items():
        monkeypatch.setenv(name, value)
    settings = PlacementSettings(cloud="prod", region_name="RegionOne", interface="public",
                                 endpoint="https://placement.example", interval_s=60)  # fmt: skip
    connection = connection_for(settings)
    assert (connection.region_name, connection.interface, connection.endpoint) == (
        "RegionOne", "public", "https://placement.example"
    )  # fmt: skip
    api = adapter_for(connection)
    assert (api.region_name, api.interface, api.endpoint_override) == (
        "RegionOne", "public", "https://placement.example"
    )  # fmt: skip
    assert api.session.verify == "/etc/ssl/certs/ca-certificates.crt"
    # The password read from clouds.yaml is never logged.
    configure_logging("info")
    logging.getLogger("resmon.test").warning("keystone said: bad password s3cret-pw")
    assert capsys.readouterr().err.endswith("keystone said: bad password ***\n")


# -- openstacksdk as the oracle ------------------------------------------------------------------

SDK_SCRIPT = """
import json, sys
from keystoneauth1 import loading
import openstack.config

cfg = openstack.config.OpenStackConfig(load_envvars=False)
region = cfg.get_one(sys.argv[1])
options = {o.dest for o in loading.get_plugin_loader(region.config["auth_type"]).get_options()}
verify, cert = region.get_requests_verify_args()
print(json.dumps({
    "auth_type": region.config["auth_type"],
    "auth": {k: v for k, v in region.config["auth"].items() if k in options and v},
    "region_name": region.region_name, "interface": region.get_interface("placement"),
    "endpoint": region.get_endpoint("placement"), "verify": verify,
    "cert": list(cert) if isinstance(cert, tuple) else cert,
}))
"""


@pytest.mark.placement_clients
@pytest.mark.parametrize("case", sorted(CASES))
def test_openstacksdk_reads_every_entry_the_same(tmp_path: Path, case: str) -> None:
    python = tool_venv("placement-clients", HERE / "clients-requirements.txt") / "python"
    env = files(tmp_path, case)
    theirs = subprocess.run(
        [str(python), "-c", SDK_SCRIPT, CLOUD_OF[case]], cwd=tmp_path,
        env={**env, "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert theirs.returncode == 0, theirs.stderr
    assert as_seen(load_cloud(CLOUD_OF[case], env)) == json.loads(theirs.stdout.splitlines()[-1])
