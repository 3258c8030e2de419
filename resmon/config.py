"""The TOML configuration file.

Credentials are only ever given by reference (``password_env`` / ``password_file``); an inline
``password`` is refused. A bad file gets an error naming the file, the field and what is wrong.

Example::

    [resmon]
    database_url = "sqlite:///var/lib/resmon/resmon.db"
    listen = "127.0.0.1:9180"          # API and /metrics; "" serves nothing
    api_tokens_env = ["RESMON_API_TOKEN"]

    [resmon.policy]                    # allocation ratios and reservations (Nova's defaults)
    cpu_allocation_ratio = 4.0
    reserved_host_memory_mb = 512

    [placement]                        # optional: sync into OpenStack Placement (docs/placement.md)
    cloud = "prod"                     # an entry of clouds.yaml (auth, region, interface, TLS)
    mode = "nova"
    interval_s = 300

    [[targets]]
    name = "kvm-01"
    collector = "libvirt"
    url = "qemu+ssh://root@kvm-01.example/system"
    interval_s = 60
    timeout_s = 30
    [targets.policy]                   # this target only; see resmon.policy
    cpu_allocation_ratio = 2.0

    [[targets]]
    name = "vc-prod"
    collector = "vmware"
    url = "https://vcenter.example/sdk"
    username = "resmon@vsphere.local"
    password_env = "RESMON_VCENTER_PASSWORD"
    ca_bundle = "/etc/resmon/vcenter-ca.pem"
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from resmon.contract import Target
from resmon.policy import PolicyTable, TargetPolicy, moved_option_message, resolve_policy
from resmon.store import DEFAULT_URL, Retention, TargetSpec

__all__ = [
    "ConfigError",
    "DaemonSettings",
    "PlacementSettings",
    "ReplicaSettings",
    "ResmonConfig",
    "RetentionSettings",
    "TargetConfig",
    "load_config",
    "split_userinfo",
]

#: Command-line flags for ad-hoc targets → collector entry-point names.
ADHOC_COLLECTORS = {"libvirt": "libvirt", "vcenter": "vmware", "hyperv": "hyperv"}


class ConfigError(Exception):
    """The configuration (file or command line) is wrong; the message says where and how."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TargetConfig(_Strict):
    """One ``[[targets]]`` entry."""

    name: Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9_.:@-]+$")]
    collector: Annotated[str, Field(min_length=1, max_length=64)]
    url: Annotated[str, Field(min_length=1, max_length=2048)]
    #: At least a second: shorter would only measure the hypervisor's and the database's load.
    interval_s: Annotated[float, Field(ge=1, le=86400)] = 60.0
    timeout_s: Annotated[float, Field(gt=0, le=3600)] = 30.0
    username: str | None = None
    password_env: str | None = None
    password_file: Path | None = None
    verify_tls: bool = True
    ca_bundle: Path | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    policy: PolicyTable | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_inline_secrets(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "password" in data:
            raise ValueError(
                "inline 'password' is not accepted: give password_env (an environment variable "
                "name) or password_file (a path) instead"
            )
        return data

    @model_validator(mode="after")
    def _one_secret_source(self) -> TargetConfig:
        if self.password_env and self.password_file:
            raise ValueError("give password_env or password_file, not both")
        if self.timeout_s > self.interval_s:
            raise ValueError(
                f"timeout_s ({self.timeout_s}) must not exceed interval_s ({self.interval_s})"
            )
        moved = moved_option_message(self.options)
        if moved is not None:
            raise ValueError(moved)
        return self

    def spec(self) -> TargetSpec:
        return TargetSpec(
            name=self.name, collector=self.collector, url=self.url, interval_s=self.interval_s
        )

    def resolve(self, *, dump_native_dir: Path | None = None) -> Target:
        """The contract's Target, with the secret read from its reference."""
        url, user_in_url = split_userinfo(self.url)
        return Target(
            name=self.name,
            collector=self.collector,
            url=url,
            username=self.username or user_in_url,
            password=self._password(),
            timeout_s=self.timeout_s,
            verify_tls=self.verify_tls,
            ca_bundle=self.ca_bundle,
            options=dict(self.options),
            dump_native_dir=dump_native_dir,
        )

    def _password(self) -> SecretStr | None:
        if self.password_env:
            value = os.environ.get(self.password_env)
            if value is None:
                raise ConfigError(
                    f"target {self.name!r}: environment variable {self.password_env!r} "
                    "(password_env) is not set"
                )
            return SecretStr(value)
        if self.password_file:
            try:
                return SecretStr(self.password_file.read_text().rstrip("\r\n"))
            except OSError as exc:
                raise ConfigError(
                    f"target {self.name!r}: password_file {str(self.password_file)!r} cannot be "
                    f"read: {exc.strerror}"
                ) from None
        return None


class DaemonSettings(_Strict):
    """The ``[resmon]`` table."""

    database_url: str = DEFAULT_URL
    listen: str = "127.0.0.1:9180"
    log_level: Annotated[str, Field(pattern=r"^(?i:debug|info|warning|error)$")] = "info"
    max_workers: Annotated[int, Field(ge=1, le=256)] = 8
    stale_after_s: Annotated[float | None, Field(gt=0)] = None
    #: Bound of every database call (connect, pool checkout, statement, one collection's write).
    database_timeout_s: Annotated[float, Field(ge=1, le=3600)] = 10.0
    #: On SIGTERM: how long finished collections may take to be stored and running ones to end.
    shutdown_grace_s: Annotated[float, Field(ge=0, le=3600)] = 10.0
    api_tokens_env: list[str] = Field(default_factory=list)
    api_tokens_file: Path | None = None
    #: Room for candidate answers kept between collections, per API process; 0 keeps none.
    answer_cache_mib: Annotated[int, Field(ge=0, le=4096)] = 32
    policy: PolicyTable = Field(default_factory=PolicyTable)

    def listen_address(self) -> tuple[str, int] | None:
        if not self.listen:
            return None
        host, sep, port = self.listen.rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"resmon.listen: {self.listen!r} is not HOST:PORT")
        return host.strip("[]") or "127.0.0.1", int(port)

    def api_tokens(self) -> list[str]:
        tokens: list[str] = []
        for name in self.api_tokens_env:
            value = os.environ.get(name)
            if not value:
                raise ConfigError(
                    f"resmon.api_tokens_env: environment variable {name!r} is not set"
                )
            tokens.append(value)
        if self.api_tokens_file is not None:
            try:
                lines = self.api_tokens_file.read_text().splitlines()
            except OSError as exc:
                raise ConfigError(
                    f"resmon.api_tokens_file: {str(self.api_tokens_file)!r}: {exc.strerror}"
                ) from None
            tokens += [line.strip() for line in lines if line.strip()]
        return tokens


class ReplicaSettings(_Strict):
    """The ``[replicas]`` table: target leases when several daemons share PostgreSQL."""

    #: A replica that stops renewing loses its targets this long after its last renewal.
    lease_ttl_s: Annotated[float, Field(ge=3, le=3600)] = 30.0
    #: Name shown as a target's holder; default ``<hostname>:<pid>``.
    replica_id: Annotated[str | None, Field(min_length=1, max_length=200)] = None


class RetentionSettings(_Strict):
    """The ``[retention]`` table: how long history is kept (0 keeps it for ever)."""

    collection_runs_days: Annotated[float, Field(ge=0)] = 14.0
    anomalies_days: Annotated[float, Field(ge=0)] = 30.0
    capacity_changes_days: Annotated[float, Field(ge=0)] = 365.0
    #: Rows deleted per transaction: short transactions never hold up a collection's write.
    batch_size: Annotated[int, Field(ge=1, le=100_000)] = 500
    #: Pause between two pruning passes.
    interval_s: Annotated[float, Field(ge=1)] = 300.0

    def policy(self) -> Retention:
        return Retention(
            collection_runs_days=self.collection_runs_days,
            anomalies_days=self.anomalies_days,
            capacity_changes_days=self.capacity_changes_days,
            batch_size=self.batch_size,
        )


#: keystoneauth1 plugin options that hold a secret: given by reference only.
SECRET_AUTH_OPTIONS = frozenset({"password", "application_credential_secret", "token", "passcode"})


class PlacementSettings(_Strict):
    """The ``[placement]`` table: a periodic sync into an OpenStack Placement in ``resmon run``.

    The connection comes either from a ``clouds.yaml`` entry (``cloud``) or from ``auth_type``,
    ``auth`` and ``secret_env``/``secret_file`` here; ``endpoint``, ``region_name``,
    ``interface``, ``verify_tls`` and ``ca_bundle`` override what the entry says.
    """

    cloud: Annotated[str | None, Field(min_length=1, max_length=255)] = None
    #: Placement's URL; else the service catalog's ``placement`` endpoint.
    endpoint: Annotated[str | None, Field(min_length=1, max_length=2048)] = None
    #: A keystoneauth1 plugin name (password, v3applicationcredential, ...) or ``noauth`` for
    #: Placement's ``noauth2`` strategy (tests). Default: ``password``, as in clouds.yaml.
    auth_type: Annotated[str | None, Field(min_length=1, max_length=64)] = None
    #: The plugin's options (auth_url, username, project_name, ...), never its secret.
    auth: dict[str, str] = Field(default_factory=dict)
    #: Where the plugin's secret (password, application_credential_secret) is read from.
    secret_env: str | None = None
    secret_file: Path | None = None
    region_name: Annotated[str | None, Field(min_length=1, max_length=255)] = None
    interface: Literal["public", "internal", "admin"] | None = None
    verify_tls: bool | None = None
    ca_bundle: Path | None = None
    mode: Literal["nova", "standalone"] = "nova"
    #: Between two syncs. A full sync reads every provider (three requests each): shorter than
    #: this floor would only load Placement.
    interval_s: Annotated[float, Field(ge=10, le=86400)] = 300.0
    #: Bound of one whole sync (every request of it included); unset: 120, at most interval_s.
    timeout_s: Annotated[float, Field(gt=0, le=3600)] = 120.0
    #: Bound of one request to Placement or Keystone; unset: 30, at most timeout_s.
    request_timeout_s: Annotated[float, Field(gt=0, le=600)] = 30.0
    remove_missing: bool = False
    #: nova mode: add the use resmon sees (instances Nova does not know) to ``reserved``.
    fold_used_into_reserved: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> PlacementSettings:
        inline = sorted(SECRET_AUTH_OPTIONS & set(self.auth))
        if inline:
            raise ValueError(
                f"auth.{inline[0]}: secrets are not accepted inline: give secret_env (an "
                "environment variable name) or secret_file (a path), or use a clouds.yaml entry"
            )
        if self.cloud and (self.auth_type or self.auth or self.secret_env or self.secret_file):
            raise ValueError(
                "give either cloud (a clouds.yaml entry) or auth_type/auth/secret_env/"
                "secret_file, not both"
            )
        if self.secret_env and self.secret_file:
            raise ValueError("give secret_env or secret_file, not both")
        if self.auth_type == "noauth" and not self.endpoint:
            raise ValueError("auth_type 'noauth' needs endpoint (there is no service catalog)")
        if "timeout_s" not in self.model_fields_set:
            self.timeout_s = min(self.timeout_s, self.interval_s)
        if "request_timeout_s" not in self.model_fields_set:
            self.request_timeout_s = min(self.request_timeout_s, self.timeout_s)
        if self.timeout_s > self.interval_s:
            raise ValueError(
                f"timeout_s ({self.timeout_s:g}) must not exceed interval_s ({self.interval_s:g})"
            )
        if self.request_timeout_s > self.timeout_s:
            raise ValueError(
                f"request_timeout_s ({self.request_timeout_s:g}) must not exceed timeout_s "
                f"({self.timeout_s:g})"
            )
        if self.fold_used_into_reserved and self.mode != "nova":
            raise ValueError(
                "fold_used_into_reserved applies to mode 'nova' only (standalone writes the use "
                "as allocations)"
            )
        if self.verify_tls is False and self.ca_bundle is not None:
            raise ValueError("ca_bundle is given but verify_tls is false: TLS would not be checked")
        return self

    def secret(self) -> str | None:
        """The secret read from its reference (None when none is configured)."""
        if self.secret_env:
            value = os.environ.get(self.secret_env)
            if value is None:
                raise ConfigError(
                    f"[placement] secret_env: environment variable {self.secret_env!r} is not set"
                )
            return value
        if self.secret_file:
            try:
                return self.secret_file.read_text().rstrip("\r\n")
            except OSError as exc:
                raise ConfigError(
                    f"[placement] secret_file {str(self.secret_file)!r} cannot be read: "
                    f"{exc.strerror}"
                ) from None
        return None


class ResmonConfig(_Strict):
    resmon: DaemonSettings = Field(default_factory=DaemonSettings)
    replicas: ReplicaSettings = Field(default_factory=ReplicaSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    placement: PlacementSettings | None = None
    targets: list[TargetConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> ResmonConfig:
        seen: set[str] = set()
        for i, target in enumerate(self.targets):
            if target.name in seen:
                raise ValueError(f"targets[{i}].name: {target.name!r} is used twice")
            seen.add(target.name)
        return self

    def policy_for(self, target: TargetConfig) -> TargetPolicy:
        """The policy of ``target``: its own settings over ``[resmon.policy]``."""
        return resolve_policy(self.resmon.policy, target.policy)


def split_userinfo(url: str) -> tuple[str, str | None]:
    """``https://user@host/sdk`` → (``https://host/sdk``, ``user``). A password in the URL is
    refused: credentials are given by reference only."""
    parts = urlsplit(url)
    if not parts.netloc or "@" not in parts.netloc:
        return url, None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, sep, _password = userinfo.partition(":")
    if sep:
        raise ConfigError(
            f"URL {urlunsplit(parts._replace(netloc=user + ':***@' + hostport))!r} carries a "
            "password: give it with password_env / password_file (or --password-env / "
            "--password-file)"
        )
    return urlunsplit(parts._replace(netloc=hostport)), unquote(user) or None


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def describe_validation_error(source: str, exc: ValidationError) -> str:
    lines = [f"{source}: invalid configuration"]
    for err in exc.errors():
        where = _location(tuple(err["loc"])) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"  {where}: {msg}")
    return "\n".join(lines)


def load_config(path: Path) -> ResmonConfig:
    """Read and validate a TOML file; every problem is reported as a ConfigError."""
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    try:
        config = ResmonConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(str(path), exc)) from None
    for target in config.targets:
        try:
            split_userinfo(target.url)
        except ConfigError as exc:
            raise ConfigError(f"{path}: targets {target.name!r}: {exc}") from None
    return config
