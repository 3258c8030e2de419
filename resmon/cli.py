"""The ``resmon`` command line."""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from resmon import __version__
from resmon.config import (
    ADHOC_COLLECTORS,
    ConfigError,
    PlacementSettings,
    ResmonConfig,
    TargetConfig,
    describe_validation_error,
    load_config,
)
from resmon.contract import (
    CONTRACT_VERSION,
    SCHEMA_VERSION,
    CollectorError,
    HostReport,
    ProviderKind,
)
from resmon.logs import add_secret, configure_logging
from resmon.registry import CollectorNotFound, available_collectors, load_collector
from resmon.runner import CollectionOutcome
from resmon.store import Store, StoreError, migration_head, redact_url

__all__ = ["main"]

log = logging.getLogger("resmon")

#: With no configuration at all, resmon reads libvirt's built-in test driver into ./resmon.db.
DEFAULT_TARGET = TargetConfig(name="local-test", collector="libvirt", url="test:///default")
SCHEMA_FILE = "host-report-v1.json"


def version_text() -> str:
    """What ``resmon --version`` prints: the package, and the versions it speaks and writes."""
    return (
        f"resmon {__version__} (collector contract {CONTRACT_VERSION}, "
        f"report schema {SCHEMA_VERSION}, database schema {migration_head()})"
    )


class _VersionAction(argparse.Action):
    """``--version``, worked out only when asked (finding the migration head reads files)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the versions and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_args: Any, **_kwargs: Any) -> None:
        print(version_text())
        parser.exit()


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", type=Path, help="TOML configuration file")
    parser.add_argument("--database", help="database URL (overrides the configuration)")


def _add_adhoc_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("ad-hoc target (instead of --config)")
    group.add_argument("--libvirt", metavar="URI", help="a libvirt URI, e.g. qemu:///system")
    group.add_argument(
        "--vcenter", metavar="URL", help="a vCenter or ESXi SDK URL, e.g. https://user@vc/sdk"
    )
    group.add_argument(
        "--hyperv", metavar="URL", help="a WinRM URL, e.g. https://user@host:5986/wsman"
    )
    group.add_argument(
        "--target", metavar="COLLECTOR=URL", action="append", default=[],
        help="any installed collector (--libvirt, --vcenter and --hyperv are shorthands for "
        "libvirt=, vmware= and hyperv=); repeatable",
    )  # fmt: skip
    group.add_argument(
        "--password-env", metavar="VAR", help="environment variable with the password"
    )
    group.add_argument("--password-file", metavar="FILE", type=Path, help="file with the password")
    group.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")
    group.add_argument("--ca-bundle", type=Path, help="CA bundle to verify the target's TLS")
    group.add_argument(
        "--insecure", action="store_true", help="do not verify TLS certificates (logged)"
    )


def build_parser(*, with_collectors: bool = True) -> argparse.ArgumentParser:
    """The parser; ``with_collectors`` imports every collector to offer ``normalise <name>``."""
    parser = argparse.ArgumentParser(
        prog="resmon",
        description="Collect what every hypervisor has and can run, in one schema.",
    )
    parser.add_argument("--version", action=_VersionAction)
    parser.add_argument(
        "--log-level", default=None, choices=("debug", "info", "warning", "error"),
        help="overrides [resmon] log_level (default: info, or warning without --config)",
    )  # fmt: skip
    parser.add_argument(
        "--log-format", default="text", choices=("text", "json"),
        help="text lines, or one JSON object per line for log shippers",
    )  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    collect = sub.add_parser("collect", help="collect targets now and print the reports")
    collect.add_argument("--once", action="store_true", help="collect one round (the default)")
    _add_config_arguments(collect)
    _add_adhoc_arguments(collect)
    collect.add_argument("--format", choices=("json", "table"), default="table")
    collect.add_argument(
        "--dump-native", metavar="DIR", type=Path, help="also save the raw native data read"
    )
    collect.add_argument(
        "--store", action="store_true", help="also write the reports to the database"
    )

    run = sub.add_parser("run", help="collect periodically into the database and serve the API")
    _add_config_arguments(run)
    run.add_argument("--once", action="store_true", help="one round, then exit (no server)")
    run.add_argument("--no-serve", action="store_true", help="do not serve the API and /metrics")

    serve = sub.add_parser("serve", help="serve the API and /metrics only (a read replica)")
    _add_config_arguments(serve)
    serve.add_argument("--listen", help="HOST:PORT (overrides the configuration)")

    targets = sub.add_parser("targets", help="list targets with their last collection status")
    _add_config_arguments(targets)

    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    upgrade = db_sub.add_parser("upgrade", help="apply the migrations")
    _add_config_arguments(upgrade)

    placement = sub.add_parser("placement", help="OpenStack Placement")
    placement_sub = placement.add_subparsers(
        dest="placement_command", required=True, metavar="ACTION"
    )
    _add_placement_sync_arguments(placement_sub.add_parser(
        "sync", help="make a Placement hold the stored providers, inventories and traits"
    ))  # fmt: skip
    _add_config_arguments(placement_sub.add_parser(
        "status", help="how the last periodic sync of resmon run went"
    ))  # fmt: skip

    schema = sub.add_parser("schema", help="the report schema")
    schema_sub = schema.add_subparsers(dest="schema_command", required=True, metavar="ACTION")
    export = schema_sub.add_parser("export", help="write the JSON Schema (and OpenAPI) files")
    export.add_argument("--output", type=Path, default=Path("schema"), help="directory")

    normalise = sub.add_parser(
        "normalise", help="normalise saved native data (what to attach to a bug report)"
    )
    norm_sub = normalise.add_subparsers(dest="collector", required=True, metavar="COLLECTOR")
    for name in available_collectors() if with_collectors else []:
        try:
            cls = load_collector(name)
        except Exception:  # a broken plugin must not break --help
            continue
        if not cls.offline_inputs:
            continue
        p = norm_sub.add_parser(name, help=f"normalise saved {name} data")
        for item in cls.offline_inputs:
            p.add_argument(
                item.flag, dest=f"input_{item.key}", type=Path, required=item.required,
                action="append" if item.multiple else "store", help=item.help,
            )  # fmt: skip
        p.add_argument("--target-name", default="offline", help="target label in the reports")
    return parser


# -- helpers ---------------------------------------------------------------------------------


def _load(args: argparse.Namespace, *, allow_default: bool = True) -> ResmonConfig:
    if getattr(args, "config", None):
        config = load_config(args.config)
    else:
        config = ResmonConfig(targets=[DEFAULT_TARGET] if allow_default else [])
    if getattr(args, "database", None):
        config.resmon.database_url = args.database
    add_secret(_url_password(config.resmon.database_url))
    if args.log_level is None and getattr(args, "config", None):
        configure_logging(config.resmon.log_level, args.log_format)
    return config


def _url_password(url: str) -> str | None:
    """The password in a database URL, if any (to keep it out of every log line)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).password
    except ArgumentError:
        return None


def _check_targets(config: ResmonConfig) -> list[str]:
    """Log the targets' warnings and return their errors (and those of ``[placement]``)."""
    from resmon.checks import check_targets

    problems = check_targets(config)
    for warning in problems.warnings:
        log.warning("%s", warning)
    errors = problems.errors
    if config.placement is not None:
        try:
            from exporters.placement_auth import check_placement
        except ImportError as exc:
            return [*errors, f"[placement] needs the placement extra (resmon[placement]): {exc}"]
        errors = [*errors, *check_placement(config.placement)]
    return errors


def _adhoc_targets(args: argparse.Namespace) -> list[TargetConfig]:
    pairs: list[tuple[str, str]] = []
    for flag, collector in ADHOC_COLLECTORS.items():
        value = getattr(args, flag, None)
        if value:
            pairs.append((collector, value))
    for spec in args.target:
        collector, sep, url = spec.partition("=")
        if not sep or not collector or not url:
            raise ConfigError(f"--target {spec!r}: expected COLLECTOR=URL")
        pairs.append((collector, url))
    targets = []
    for i, (collector, url) in enumerate(pairs):
        fields = {
            "name": f"{collector}-{i + 1}" if len(pairs) > 1 else collector,
            "collector": collector,
            "url": url,
            "timeout_s": args.timeout,
            "interval_s": max(args.timeout, 60.0),
            "password_env": args.password_env,
            "password_file": args.password_file,
            "verify_tls": not args.insecure,
            "ca_bundle": args.ca_bundle,
        }
        try:
            targets.append(TargetConfig.model_validate(fields))
        except ValidationError as exc:
            raise ConfigError(describe_validation_error("command line", exc)) from None
    return targets


def _open_store(config: ResmonConfig) -> Store:
    """The migrated store; any failure is one line naming the setting."""
    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    url = config.resmon.database_url
    try:
        store = Store(url, timeout_s=config.resmon.database_timeout_s)
    except StoreError as exc:
        raise StoreError(f"[resmon] {_first_line(exc)}") from None
    setting = f"[resmon] database_url {redact_url(url)!r}"
    try:
        store.upgrade()
    except (SQLAlchemyError, CommandError, OSError) as exc:
        store.close()
        orig = getattr(exc, "orig", None) or exc
        raise StoreError(f"{setting}: cannot be used: {_first_line(orig)}") from None
    return store


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _table(reports: Sequence[HostReport]) -> str:
    header = ("TARGET", "HOST", "KIND", "STATE", "HV", "ARCH", "VCPU", "MEMORY_MB", "DISK_GB",
              "INSTANCES")  # fmt: skip
    rows = [header]
    for r in reports:

        def inv(rc: str, report: HostReport = r) -> str:
            item = report.inventory(rc)
            return f"{item.used}/{item.capacity}" if item else "-"

        rows.append((
            r.identity.target, r.identity.hostname or r.identity.host_id,
            r.provider_kind.value, r.state.value,
            r.hypervisor.hv_type if r.hypervisor else "-", r.cpu.arch if r.cpu else "-",
            inv("VCPU"), inv("MEMORY_MB"), inv("DISK_GB"),
            ",".join(si.key for si in r.supported_instances) or "-",
        ))  # fmt: skip
    return _columns(rows)


def _columns(rows: Sequence[Sequence[str]]) -> str:
    """Rows as left-aligned columns, the first row being the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _print_failures(outcomes: Sequence[CollectionOutcome]) -> int:
    failed = [o for o in outcomes if not o.ok]
    for o in failed:
        print(f"resmon: target {o.target} ({o.collector}) failed: {o.error_kind}: "
              f"{o.error_message}", file=sys.stderr)  # fmt: skip
    return 1 if failed else 0


# -- commands ---------------------------------------------------------------------------------


def cmd_collect(args: argparse.Namespace) -> int:
    adhoc = _adhoc_targets(args)
    if adhoc and args.config:
        raise ConfigError("give either --config or an ad-hoc target, not both")
    config = _load(args)
    if adhoc:
        config = ResmonConfig(resmon=config.resmon, targets=adhoc)
    for target_config in config.targets:  # an unknown collector is an error of the command
        load_collector(target_config.collector)
    from resmon.daemon import Daemon

    # The daemon's round: every collection is bounded by its target's timeout_s.
    store = _open_store(config) if args.store else None
    try:
        finished = Daemon(config, store, dump_native_dir=args.dump_native).run(once=True)
    finally:
        if store is not None:
            store.close()
    by_target = {o.target: o for o in finished}
    outcomes = [by_target[t.name] for t in config.targets if t.name in by_target]
    reports = [r for o in outcomes for r in o.reports]
    if args.format == "json":
        print(json.dumps([r.model_dump(mode="json") for r in reports], indent=2))
    else:
        print(_table(reports))
    return _print_failures(outcomes)


def cmd_run(args: argparse.Namespace) -> int:
    from resmon.daemon import ApiBindError, Daemon, install_stop_signals

    stop_event = threading.Event()
    if not args.once:  # first: a SIGTERM during start-up must stop the daemon, not kill it
        install_stop_signals(stop_event)
    config = _load(args)
    errors = _check_targets(config)
    if errors:
        raise ConfigError("invalid targets:\n  " + "\n  ".join(errors))
    store = _open_store(config)
    address = None if args.once or args.no_serve else config.resmon.listen_address()
    daemon = Daemon(config, store, stop_event=stop_event)
    if args.once:
        outcomes = daemon.run(once=True)
        for o in outcomes:
            status = "ok" if o.ok else f"FAILED {o.error_kind}: {o.error_message}"
            hosts = sum(1 for r in o.reports if r.provider_kind is ProviderKind.COMPUTE_HOST)
            print(f"{o.target}: {status} ({len(o.reports)} providers, {hosts} compute hosts, "
                  f"{o.duration_s:.3f}s) -> {config.resmon.database_url}")  # fmt: skip
        return _print_failures(outcomes) if any(not o.ok for o in outcomes) else 0
    if address is not None:
        try:
            daemon.start_server()
        except ApiBindError as exc:
            daemon.shutdown()
            store.close()
            raise ConfigError(str(exc)) from None
    log.info(
        "resmon %s: %s, database %s, %d targets", __version__,
        f"serving the API and /metrics on http://{address[0]}:{address[1]}" if address
        else "no API",
        redact_url(config.resmon.database_url), len(config.targets),
    )  # fmt: skip
    try:
        daemon.run()
    finally:
        daemon.stop_server()
        store.close()
    log.info("stopped")
    _exit_now_if_threads_linger(0)
    return 0


def _exit_now_if_threads_linger(code: int) -> None:
    """The shutdown grace is over: a collector's own thread still blocked in a hypervisor call
    must not hold the process (the interpreter would wait for it at exit)."""
    others = [t for t in threading.enumerate() if t is not threading.main_thread()]
    if any(t.is_alive() and not t.daemon for t in others):
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from exporters.api import SERVER_OPTIONS, create_app

    config = _load(args, allow_default=False)
    if args.listen:
        config.resmon.listen = args.listen
    address = config.resmon.listen_address()
    if address is None:
        raise ConfigError("resmon.listen is empty: nothing to serve")
    store = Store(config.resmon.database_url, timeout_s=config.resmon.database_timeout_s)
    app = create_app(
        store, api_tokens=config.resmon.api_tokens(), stale_after_s=config.resmon.stale_after_s,
        answer_cache_bytes=config.resmon.answer_cache_mib * 1024 * 1024,
    )  # fmt: skip
    # Start-up objects (modules, the app, its routes) live for the whole process: keeping them
    # out of the collector's generations removes most of the full-collection pauses from requests.
    gc.freeze()
    uvicorn.run(app, host=address[0], port=address[1], log_level="info", **SERVER_OPTIONS)
    return 0


def cmd_targets(args: argparse.Namespace) -> int:
    config = _load(args)
    errors = _check_targets(config)
    store = _open_store(config)
    store.sync_targets([t.spec() for t in config.targets])
    rows = [("TARGET", "COLLECTOR", "STATUS", "LAST SUCCESS", "HOSTS", "ERROR")]
    counts = store.host_counts()
    for t in store.targets():
        rows.append((
            t.name, t.collector, t.last_status,
            t.last_success_at.isoformat(timespec="seconds") if t.last_success_at else "-",
            str(counts.get(t.name, 0)),
            f"{t.last_error_kind}: {t.last_error_message}" if t.last_error_kind else "",
        ))  # fmt: skip
    print(_columns(rows))
    store.close()
    for error in errors:
        print(f"resmon: {error}", file=sys.stderr)
    return 1 if errors else 0


def cmd_db(args: argparse.Namespace) -> int:
    config = _load(args)
    store = _open_store(config)
    store.close()
    print(f"database {config.resmon.database_url} is at the latest schema")
    return 0


def host_report_json_schema() -> str:
    return json.dumps(HostReport.model_json_schema(), indent=2, sort_keys=True) + "\n"


def cmd_schema(args: argparse.Namespace) -> int:
    args.output.mkdir(parents=True, exist_ok=True)
    path = args.output / SCHEMA_FILE
    path.write_text(host_report_json_schema())
    print(f"wrote {path}")
    try:
        from exporters.api import openapi_document
    except ImportError:
        return 0
    api_path = args.output / "openapi.json"
    api_path.write_text(json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n")
    print(f"wrote {api_path}")
    return 0


def _add_placement_sync_arguments(sync: argparse.ArgumentParser) -> None:
    _add_config_arguments(sync)
    sync.add_argument(
        "--cloud", help="a clouds.yaml entry (instead of --endpoint/--auth-type and [placement])"
    )
    sync.add_argument("--endpoint", help="Placement URL (needed with noauth; else from Keystone)")
    sync.add_argument("--auth-type", choices=("noauth", "password", "application_credential"))
    sync.add_argument("--auth-url", help="Keystone v3 URL")
    sync.add_argument("--username")
    sync.add_argument("--project-name")
    sync.add_argument("--application-credential-id")
    sync.add_argument(
        "--secret-env", metavar="VAR",
        help="environment variable holding the password or application credential secret",
    )  # fmt: skip
    sync.add_argument(
        "--cacert", type=Path, help="CA bundle to verify Placement's and Keystone's TLS"
    )
    sync.add_argument("--insecure", action="store_true", help="do not verify TLS (tests only)")
    sync.add_argument("--mode", choices=("nova", "standalone"))
    sync.add_argument("--fold-used-into-reserved", action="store_true", default=None)
    sync.add_argument("--remove-missing", action="store_true", default=None)


def _placement_settings(args: argparse.Namespace, config: ResmonConfig) -> PlacementSettings:
    """The sync's settings: from the flags when they name a Placement, else ``[placement]``;
    --mode, --fold-used-into-reserved and --remove-missing apply to both."""
    fields: dict[str, Any]
    if args.cloud or args.endpoint or args.auth_type:
        auth_type = args.auth_type or ("noauth" if args.endpoint and not args.cloud else None)
        fields = {"cloud": args.cloud, "endpoint": args.endpoint}
        if auth_type in ("password", "application_credential"):
            if not args.auth_url or not args.secret_env:
                raise ConfigError(f"--auth-type {auth_type} needs --auth-url and --secret-env")
            auth = {"auth_url": args.auth_url}
            if auth_type == "password":
                auth.update(username=args.username or "", project_name=args.project_name or "",
                            user_domain_name="Default", project_domain_name="Default")  # fmt: skip
            else:
                auth["application_credential_id"] = args.application_credential_id or ""
            plugin = "v3password" if auth_type == "password" else "v3applicationcredential"
            fields.update(auth_type=plugin, auth=auth, secret_env=args.secret_env)
        elif auth_type == "noauth":
            if not args.endpoint:
                raise ConfigError("--auth-type noauth needs --endpoint")
            fields["auth_type"] = "noauth"
    elif config.placement is not None:
        fields = config.placement.model_dump(exclude_unset=True)
    else:
        raise ConfigError(
            "placement sync: give --endpoint or --cloud, or a [placement] table in --config"
        )
    if args.insecure:
        fields["verify_tls"] = False
    if args.cacert:
        fields["ca_bundle"] = args.cacert
    for flag in ("mode", "fold_used_into_reserved", "remove_missing"):
        if getattr(args, flag) is not None:
            fields[flag] = getattr(args, flag)
    try:
        return PlacementSettings.model_validate(fields)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error("command line", exc)) from None


def cmd_placement(args: argparse.Namespace) -> int:
    if args.placement_command == "status":
        return _placement_status(args)
    from exporters.placement_auth import adapter_for, connection_for
    from exporters.placement_sync import PlacementSyncError, SyncOptions, sync

    config = _load(args)
    settings = _placement_settings(args, config)
    api = adapter_for(connection_for(settings), timeout_s=settings.request_timeout_s)
    store = _open_store(config)
    options = SyncOptions(
        mode=settings.mode, fold_used_into_reserved=settings.fold_used_into_reserved,
        remove_missing=settings.remove_missing,
    )  # fmt: skip
    try:
        result = sync(store, api, options)
    except PlacementSyncError as exc:
        print(f"resmon: placement sync failed: {exc.kind}: {_one_line(str(exc))}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(
        f"placement sync: {result.providers} providers, {result.writes} writes "
        f"({result.created} created, {result.removed} removed, "
        f"{result.conflicts_retried} conflicts retried)"
    )
    return 0


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _placement_status(args: argparse.Namespace) -> int:
    """``resmon placement status``: the last periodic sync as stored; exits 1 when it failed."""
    from exporters._sync_status import TASK_NAME

    config = _load(args)
    store = _open_store(config)
    try:
        status = store.task_status(TASK_NAME)
    finally:
        store.close()
    if status is None or status.last_status == "never":
        configured = (
            "configured" if config.placement else "no [placement] table in the configuration"
        )
        print(f"placement sync: never ran ({configured})")
        return 0

    def at(value: Any) -> str:
        return value.isoformat(timespec="seconds") if value else "-"

    rows = [
        ("STATUS", "LAST ATTEMPT", "LAST SUCCESS", "DURATION", "FAILURES", "HOLDER", "ERROR"),
        (
            status.last_status, at(status.last_attempt_at), at(status.last_success_at),
            f"{status.last_duration_s:.3f}s" if status.last_duration_s is not None else "-",
            str(status.consecutive_failures), status.holder or "-",
            f"{status.error_kind}: {status.error_message}" if status.error_kind else "",
        ),
    ]  # fmt: skip
    print(_columns(rows))
    return 1 if status.last_status == "failed" else 0


def cmd_normalise(args: argparse.Namespace) -> int:
    cls = load_collector(args.collector)
    inputs: dict[str, list[Path]] = {}
    for item in cls.offline_inputs:
        value = getattr(args, f"input_{item.key}")
        if value:
            inputs[item.key] = value if isinstance(value, list) else [value]
    for paths in inputs.values():
        for path in paths:
            if not path.is_file():
                raise ConfigError(f"{path}: no such file")
    reports = cls.normalise_offline(inputs, target=args.target_name)
    print(json.dumps([r.model_dump(mode="json") for r in reports], indent=2))
    return 0


COMMANDS = {
    "collect": cmd_collect,
    "run": cmd_run,
    "serve": cmd_serve,
    "targets": cmd_targets,
    "db": cmd_db,
    "schema": cmd_schema,
    "normalise": cmd_normalise,
    "placement": cmd_placement,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(with_collectors="normalise" in argv).parse_args(argv)
    configure_logging(args.log_level or "warning", args.log_format)
    try:
        return COMMANDS[args.command](args)
    except (ConfigError, CollectorNotFound, StoreError) as exc:
        print(f"resmon: {exc}", file=sys.stderr)
        return 2
    except CollectorError as exc:
        print(f"resmon: {exc.kind}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
