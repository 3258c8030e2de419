"""The ``[placement]`` table: every mistake is reported when the configuration is loaded
(``resmon targets``, ``resmon run`` start-up), one line naming the setting, and no secret is
ever printed."""

from __future__ import annotations

from pathlib import Path

import pytest

from resmon.cli import main
from resmon.config import ConfigError, load_config


def write(tmp_path: Path, placement: str) -> Path:
    path = tmp_path / "resmon.toml"
    path.write_text(
        f'[resmon]\nlisten = ""\ndatabase_url = "sqlite:///{tmp_path / "r.db"}"\n\n'
        f"[placement]\n{placement}\n"
    )
    return path


# (the [placement] table, what the error says)
INVALID_FILES = [
    ('endpoint = "http://p"\nauth_type = "noauth"\ninterval_s = 1',
     r"placement\.interval_s: Input should be greater than or equal to 10"),
    ('auth_type = "noauth"', r"placement: Value error, auth_type 'noauth' needs endpoint|"
                             r"placement: auth_type 'noauth' needs endpoint"),
    ('auth_type = "password"\nauth = { auth_url = "http://k/v3", password = "hunter2" }',
     r"placement: auth\.password: secrets are not accepted inline"),
    ('cloud = "prod"\nauth_type = "password"',
     r"placement: give either cloud \(a clouds.yaml entry\) or auth_type"),
    ('endpoint = "http://p"\nauth_type = "noauth"\nmode = "standalone"\n'
     "fold_used_into_reserved = true", r"fold_used_into_reserved applies to mode 'nova' only"),
    ('endpoint = "http://p"\nauth_type = "noauth"\ninterval_s = 60\ntimeout_s = 61',
     r"timeout_s \(61\) must not exceed interval_s \(60\)"),
    ('endpoint = "http://p"\nauth_type = "noauth"\nmode = "both"',
     r"placement\.mode: Input should be 'nova' or 'standalone'"),
    ('endpoint = "http://p"\nauth_type = "noauth"\nverify_tls = false\nca_bundle = "/x.pem"',
     r"ca_bundle is given but verify_tls is false"),
    ('endpoint = "http://p"\nauth_type = "noauth"\ninterval = 60',
     r"placement\.interval: Extra inputs are not permitted"),
]  # fmt: skip


@pytest.mark.parametrize(("placement", "message"), INVALID_FILES)
def test_an_invalid_table_names_the_setting(tmp_path: Path, placement: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(write(tmp_path, placement))
    assert "hunter2" not in str(caught.value)


# (the [placement] table, the one line `resmon targets` prints); RESMON_TEST_SECRET is unset.
UNUSABLE = [
    ('auth_type = "v3password"\nauth = { username = "resmon", user_domain_name = "Default" }\n'
     'secret_env = "RESMON_TEST_PW"', "resmon: [placement]: auth_type 'v3password' needs auth_url"),
    ('auth_type = "v3password"\nauth = { auth_url = "http://k/v3", username = "resmon" }\n'
     'secret_env = "RESMON_TEST_PW"', "resmon: [placement]: auth_type 'v3password': You have "
     "provided a username. In the V3 identity API a username is only unique within a domain"),
    ('auth_type = "v3password"\nauth = { auth_url = "http://k/v3" }\n'
     'secret_env = "RESMON_TEST_SECRET"',
     "resmon: [placement] secret_env: environment variable 'RESMON_TEST_SECRET' is not set"),
    ('auth_type = "kerberos-please"\nendpoint = "http://p"',
     "resmon: [placement]: auth_type 'kerberos-please' is not a keystoneauth1 plugin (known: "),
    ('auth_type = "v3password"\nauth = { auth_url = "http://k/v3", colour = "blue" }\n'
     'secret_env = "RESMON_TEST_PW"',
     "resmon: [placement] auth.colour: not an option of auth_type 'v3password' (options: "),
    ('auth_type = "v3applicationcredential"\n'
     'auth = { auth_url = "http://k/v3", application_credential_id = "abc" }',
     "resmon: [placement]: auth_type 'v3applicationcredential' needs "
     "application_credential_secret (secret_env or secret_file)"),
    ('auth_type = "noauth"\nendpoint = "https://p"\nca_bundle = "/nonexistent/ca.pem"',
     "resmon: [placement]: CA bundle '/nonexistent/ca.pem': no such file"),
    ('cloud = "nosuch"', "resmon: [placement] cloud 'nosuch': not in "),
]  # fmt: skip


@pytest.mark.parametrize(("placement", "line"), UNUSABLE)
def test_an_unusable_connection_is_reported_by_resmon_targets(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    placement: str,
    line: str,
) -> None:
    monkeypatch.setenv("RESMON_TEST_PW", "hunter2")
    monkeypatch.delenv("RESMON_TEST_SECRET", raising=False)
    (tmp_path / "clouds.yaml").write_text("clouds:\n  prod:\n    auth_type: none\n")
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(tmp_path / "clouds.yaml"))
    monkeypatch.delenv("OS_CLIENT_SECURE_FILE", raising=False)
    monkeypatch.chdir(tmp_path)
    config = write(tmp_path, placement)
    assert main(["targets", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(line), err
    assert "hunter2" not in err
    # resmon run refuses to start with the same line.
    assert main(["run", "--config", str(config), "--no-serve"]) == 2
    assert line.removeprefix("resmon: ") in capsys.readouterr().err


def test_a_usable_table_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write(tmp_path, 'auth_type = "noauth"\nendpoint = "http://127.0.0.1:1"')
    assert main(["targets", "--config", str(config)]) == 0
    assert capsys.readouterr().err == ""
    assert main(["placement", "status", "--config", str(config)]) == 0
    assert capsys.readouterr().out == "placement sync: never ran (configured)\n"
