"""How the Placement sync connects: ``[placement]`` settings or a ``clouds.yaml`` entry, made into
a keystoneauth1 adapter.

``clouds.yaml`` is read the way openstacksdk's ``openstack.config`` reads it (the reference
loader; it is not a dependency: it would bring seven more packages for a file format), for the
settings a Placement client uses:

- the first file found of ``$OS_CLIENT_CONFIG_FILE``, then ``clouds.yaml``/``.yml``/``.json`` in
  the working directory, ``~/.config/openstack`` (``$XDG_CONFIG_HOME/openstack``) and
  ``/etc/openstack``; ``secure.yaml`` (``$OS_CLIENT_SECURE_FILE``, same places) is merged over
  it, nested tables merged key by key;
- ``auth_type`` (default ``password``; ``auth_plugin`` is its old name, ``token_endpoint`` the old
  name of ``admin_token``, an empty one means ``none``), and the plugin's options from ``auth``
  or, failing that, from the entry itself (``tenant_name``/``tenant_id`` are ``project_name``/
  ``project_id``; ``domain_name``/``domain_id`` fill the user and project domains of a
  project-scoped entry);
- ``region_name`` (or the first of ``regions``), ``interface`` (``placement_interface`` first,
  ``endpoint_type`` its old name; default ``public``), ``placement_endpoint_override``;
- TLS: ``insecure: true`` wins, else ``verify`` (default true) with ``cacert``; ``cert`` and
  ``key`` for a client certificate.

Vendor profiles (``profile``) and the ``OS_*`` environment variables are not read: name every
setting in the entry. Secrets stay in the files (``secure.yaml`` is where OpenStack keeps them)
and are never logged: they are registered with :func:`resmon.logs.add_secret`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keystoneauth1 import adapter, loading, session
from keystoneauth1 import exceptions as ks_exceptions

from resmon.config import SECRET_AUTH_OPTIONS, ConfigError, PlacementSettings
from resmon.logs import add_secret

__all__ = [
    "Connection",
    "adapter_for",
    "check_placement",
    "cloud_files",
    "connection_for",
    "load_cloud",
]

MICROVERSION = "1.39"
_SUFFIXES = (".yaml", ".yml", ".json")
#: Placement's ``noauth2`` strategy takes the token as ``user[:project]``; ``admin`` is admin.
NOAUTH_TOKEN = "admin"


@dataclass
class Connection:
    """Everything needed to build the adapter, secrets included (never print one)."""

    auth_type: str
    auth: dict[str, str] = field(default_factory=dict)
    endpoint: str | None = None
    region_name: str | None = None
    interface: str = "public"
    verify: bool | str = True
    cert: str | tuple[str, str] | None = None
    #: Where the settings came from, for messages.
    source: str = "[placement]"


def _search_dirs(env: Mapping[str, str]) -> list[Path]:
    config_home = env.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return [Path.cwd(), Path(config_home) / "openstack", Path("/etc/openstack")]


def cloud_files(stem: str, env: Mapping[str, str] | None = None) -> list[Path]:
    """Where ``clouds`` (or ``secure``) files are looked for, in order."""
    env = os.environ if env is None else env
    override = env.get("OS_CLIENT_CONFIG_FILE" if stem == "clouds" else "OS_CLIENT_SECURE_FILE")
    files = [Path(override)] if override else []
    return files + [d / f"{stem}{suffix}" for d in _search_dirs(env) for suffix in _SUFFIXES]


def _read_first(stem: str, env: Mapping[str, str]) -> tuple[Path | None, dict[str, Any]]:
    import yaml

    for path in cloud_files(stem, env):
        if not path.is_file():
            continue
        try:
            text = path.read_text()
        except PermissionError:
            continue  # as openstacksdk: an unreadable file is skipped
        except OSError as exc:
            raise ConfigError(f"{path}: cannot be read: {exc.strerror}") from None
        try:
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as exc:
            reason = " ".join(str(exc).split())
            raise ConfigError(f"{path}: not valid {path.suffix[1:].upper()}: {reason}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: is empty or not a mapping")
        return path, data
    return None, {}


def _merge(old: dict[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(old)
    for key, value in new.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = dict(value) if isinstance(value, Mapping) else value
    return out


def _truthy(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).lower() == "true"


def load_cloud(name: str, env: Mapping[str, str] | None = None) -> Connection:
    """The connection of the ``clouds.yaml`` entry ``name`` (see the module docstring)."""
    env = os.environ if env is None else env
    path, config = _read_first("clouds", env)
    secure_path, secure = _read_first("secure", env)
    if path is None:
        looked = ", ".join(str(p) for p in cloud_files("clouds", env)[:: len(_SUFFIXES)])
        raise ConfigError(f"[placement] cloud {name!r}: no clouds.yaml found (looked in {looked})")
    clouds = _merge(config, secure).get("clouds") or {}
    source = str(path) + (f" + {secure_path}" if secure_path else "")
    if name not in clouds:
        known = ", ".join(sorted(clouds)) or "none"
        raise ConfigError(f"[placement] cloud {name!r}: not in {source} (clouds: {known})")
    entry = {k.replace("-", "_"): v for k, v in dict(clouds[name] or {}).items()}
    if "profile" in entry or "cloud" in entry:
        raise ConfigError(
            f"[placement] cloud {name!r} ({source}): vendor profiles are not read; give the "
            "settings in the entry"
        )
    auth = {k.replace("-", "_"): v for k, v in dict(entry.pop("auth", None) or {}).items()}
    auth_type = entry.pop("auth_type", entry.pop("auth_plugin", "password"))
    auth_type = {None: "none", "": "none", "None": "none", "token_endpoint": "admin_token"}.get(
        auth_type, auth_type
    )
    # Auth options outside auth, and old names, as openstacksdk's _fix_backwards_auth maps
    # them: the last name found wins, a value outside auth over one inside.
    moved = {
        "project_name": ("tenant_name", "project_name"),
        "project_id": ("tenant_id", "project_id"),
        "token": ("auth_token", "token"),
        **{key: (key,) for key in ("domain_id", "domain_name", "user_domain_id",
                                   "user_domain_name", "project_domain_id",
                                   "project_domain_name", "passcode")},
    }  # fmt: skip
    for new, names in moved.items():
        found = None
        for key in names:
            if key in auth:
                found = auth.pop(key)
            if key in entry:
                found = entry.pop(key)
        if found:
            auth[new] = str(found)
    # A project-scoped entry's domain_* is the user's and the project's domain.
    if "project_id" in auth or "project_name" in auth:
        domains = {"domain_id": ("user_domain_id", "project_domain_id"),
                   "domain_name": ("user_domain_name", "project_domain_name")}  # fmt: skip
        for common, parts in domains.items():
            value = auth.pop(common, None)
            if value is not None:
                for part in parts:
                    auth.setdefault(part, value)
    # The first region known: of regions if given, else of region_name (a list, or names
    # separated by commas).
    regions = entry.get("regions") or entry.get("region_name") or []
    if isinstance(regions, str):
        regions = regions.split(",")
    first = regions[0] if regions else None
    region = first.get("name") if isinstance(first, Mapping) else first
    interface = (entry.get("placement_interface") or entry.get("placement_endpoint_type")
                 or entry.get("interface") or entry.get("endpoint_type") or "public")  # fmt: skip
    verify: bool | str = False if _truthy(entry.get("insecure", False)) else (
        _truthy(entry.get("verify", True))
    )  # fmt: skip
    if verify and entry.get("cacert"):
        verify = str(entry["cacert"])
    cert: str | tuple[str, str] | None = None
    if entry.get("cert"):
        cert = (str(entry["cert"]), str(entry["key"])) if entry.get("key") else str(entry["cert"])
    connection = Connection(
        auth_type=str(auth_type), auth={}, endpoint=entry.get("placement_endpoint_override"),
        region_name=region or None, interface=str(interface), verify=verify, cert=cert,
        source=f"cloud {name!r} ({source})",
    )  # fmt: skip
    # The plugin's own options, from auth or else the entry (as openstacksdk's _validate_auth).
    loader = _loader(connection)
    for option in loader.get_options():
        for key in [option.dest, *(o.dest for o in option.deprecated)]:
            value = auth.get(key, entry.get(key))
            if value is not None and value != "":
                connection.auth[option.dest] = str(value)
                break
    return connection


@contextmanager
def _quiet_stevedore() -> Iterator[None]:
    """stevedore logs every plugin it cannot import (SAML ones without lxml, an unknown name)
    while keystoneauth1 looks one up: noise next to the one-line error resmon gives."""
    logger = logging.getLogger("stevedore")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


def _loader(connection: Connection) -> Any:
    try:
        with _quiet_stevedore():
            return loading.get_plugin_loader(connection.auth_type)
    except ks_exceptions.NoMatchingPlugin:
        with _quiet_stevedore():
            known = ", ".join(sorted(loading.get_available_plugin_names()))
        raise ConfigError(
            f"{connection.source}: auth_type {connection.auth_type!r} is not a keystoneauth1 "
            f"plugin (known: noauth, {known})"
        ) from None


def connection_for(settings: PlacementSettings, env: Mapping[str, str] | None = None) -> Connection:
    """The connection ``settings`` describe (reading clouds.yaml and the secret's reference)."""
    if settings.cloud:
        connection = load_cloud(settings.cloud, env)
    elif settings.auth_type == "noauth":
        connection = Connection(auth_type="admin_token", auth={"token": NOAUTH_TOKEN})
    else:
        connection = Connection(settings.auth_type or "password", dict(settings.auth))
        secret = settings.secret()
        if secret is not None:
            options = {o.dest for o in _loader(connection).get_options() if o.secret}
            wanted = sorted(options & SECRET_AUTH_OPTIONS) or sorted(options)
            if not wanted:
                raise ConfigError(
                    f"[placement] auth_type {connection.auth_type!r} takes no secret: remove "
                    "secret_env/secret_file"
                )
            connection.auth[wanted[0]] = secret
    connection.endpoint = settings.endpoint or connection.endpoint
    connection.region_name = settings.region_name or connection.region_name
    connection.interface = settings.interface or connection.interface
    if settings.verify_tls is False:
        connection.verify = False
    elif settings.ca_bundle is not None:
        connection.verify = str(settings.ca_bundle)
    elif settings.verify_tls is True and connection.verify is False:
        connection.verify = True
    if connection.auth_type == "admin_token" and connection.endpoint:
        connection.auth.setdefault("endpoint", connection.endpoint)
    return connection


def _plugin(connection: Connection) -> Any:
    loader = _loader(connection)
    known = {o.dest for o in loader.get_options()}
    unknown = sorted(set(connection.auth) - known)
    if unknown and connection.source == "[placement]":
        raise ConfigError(
            f"[placement] auth.{unknown[0]}: not an option of auth_type "
            f"{connection.auth_type!r} (options: {', '.join(sorted(known))})"
        )
    for option in loader.get_options():
        if option.secret and connection.auth.get(option.dest):
            add_secret(connection.auth[option.dest])
    missing = [o for o in loader.get_options() if o.required and not connection.auth.get(o.dest)]
    if missing:
        hint = " (secret_env or secret_file)" if any(o.secret for o in missing) else ""
        raise ConfigError(
            f"{connection.source}: auth_type {connection.auth_type!r} needs "
            f"{', '.join(o.dest for o in missing)}{hint}"
        )
    try:
        return loader.load_from_options(**{k: v for k, v in connection.auth.items() if k in known})
    except ks_exceptions.ClientException as exc:  # options that do not go together
        reason = " ".join(str(exc).split())
        raise ConfigError(
            f"{connection.source}: auth_type {connection.auth_type!r}: {reason}"
        ) from None


def adapter_for(connection: Connection, *, timeout_s: float = 30.0) -> adapter.Adapter:
    """A keystoneauth1 adapter for Placement over ``connection``; nothing is contacted yet."""
    if connection.auth_type in ("none", "admin_token") and not connection.endpoint:
        raise ConfigError(
            f"{connection.source}: auth_type {connection.auth_type!r} needs the Placement "
            "endpoint (endpoint, or placement_endpoint_override in clouds.yaml)"
        )
    if isinstance(connection.verify, str) and not Path(connection.verify).is_file():
        raise ConfigError(f"{connection.source}: CA bundle {connection.verify!r}: no such file")
    sess = session.Session(
        auth=_plugin(connection), verify=connection.verify, cert=connection.cert, timeout=timeout_s
    )
    return adapter.Adapter(
        sess, service_type="placement", interface=connection.interface,
        region_name=connection.region_name, endpoint_override=connection.endpoint,
        default_microversion=MICROVERSION, raise_exc=False,
    )  # fmt: skip


def check_placement(settings: PlacementSettings) -> list[str]:
    """The ``[placement]`` problems found without contacting anything, one line each."""
    try:
        adapter_for(connection_for(settings), timeout_s=settings.request_timeout_s)
    except ConfigError as exc:
        return [str(exc)]
    return []
