"""Parsing of the query API's own syntaxes: Placement's ``resources``/``required``, the
``instance`` triple, pagination cursors and host ids. Errors are :class:`ApiError` 400s that
name the bad part; nothing here touches the database."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence

import os_resource_classes
import os_traits

from resmon.contract import units, vocabulary

from . import errors
from .errors import ApiError, bad_request

__all__ = [
    "decode_cursor",
    "decode_host_ref",
    "encode_cursor",
    "encode_host_ref",
    "parse_instance",
    "parse_required",
    "parse_resources",
]

_CUSTOM = re.compile(r"^CUSTOM_[A-Z0-9_]+$")
_AMOUNT = re.compile(r"^[+-]?[0-9]+$")
_STANDARD_CLASSES = frozenset(os_resource_classes.STANDARDS)
_STANDARD_TRAITS = frozenset(os_traits.get_traits())
#: Row ids are 32-bit integers on PostgreSQL: a cursor beyond is not one this API issued.
MAX_ROW_ID = 2**31 - 1


def _short(text: str) -> str:
    return text if len(text) <= 80 else text[:77] + "..."


def parse_resources(value: str) -> tuple[tuple[str, int], ...]:
    """``VCPU:4,MEMORY_MB:8192`` → ``(("VCPU", 4), ("MEMORY_MB", 8192))``, order kept."""
    out: list[tuple[str, int]] = []
    seen: set[str] = set()
    for part in value.split(","):
        name, sep, amount = part.strip().partition(":")
        if not sep or not name or not amount:
            raise bad_request(
                errors.BAD_RESOURCES,
                f"resources: {_short(part)!r} is not CLASS:AMOUNT (e.g. VCPU:4,MEMORY_MB:8192)",
            )
        if name not in _STANDARD_CLASSES and not _CUSTOM.match(name):
            raise bad_request(
                errors.UNKNOWN_RESOURCE_CLASS,
                f"resources: unknown resource class {_short(name)!r} "
                "(not in os-resource-classes and not CUSTOM_*)",
            )
        if not _AMOUNT.match(amount):
            raise bad_request(
                errors.BAD_RESOURCES,
                f"resources: amount {_short(amount)!r} of {name} is not an integer",
            )
        number = int(amount)
        if number <= 0 or number > units.PLACEMENT_MAX_INT:
            raise bad_request(
                errors.BAD_RESOURCES,
                f"resources: amount {number} of {name} must be between 1 and "
                f"{units.PLACEMENT_MAX_INT}",
            )
        if name in seen:
            raise bad_request(errors.BAD_RESOURCES, f"resources: {name} is given twice")
        seen.add(name)
        out.append((name, number))
    return tuple(out)


def parse_required(values: Sequence[str]) -> tuple[frozenset[str], frozenset[str]]:
    """``["HW_CPU_X86_AVX2,!COMPUTE_STATUS_DISABLED"]`` → (required, forbidden).

    Several ``required`` parameters add up, as in Placement.
    """
    required: set[str] = set()
    forbidden: set[str] = set()
    for value in values:
        for part in value.split(","):
            name = part.strip()
            negated = name.startswith("!")
            name = name.removeprefix("!")
            if not name:
                raise bad_request(errors.BAD_TRAITS, f"required: empty trait in {_short(value)!r}")
            if name not in _STANDARD_TRAITS and not _CUSTOM.match(name):
                raise bad_request(
                    errors.UNKNOWN_TRAIT,
                    f"required: unknown trait {_short(name)!r} (not in os-traits and not CUSTOM_*)",
                )
            (forbidden if negated else required).add(name)
    both = required & forbidden
    if both:
        raise bad_request(
            errors.BAD_TRAITS, f"required: {', '.join(sorted(both))} both required and forbidden"
        )
    return frozenset(required), frozenset(forbidden)


def parse_instance(value: str) -> tuple[str, str, str]:
    """``x86_64/kvm/hvm`` → canonical (arch, hv_type, vm_mode); aliases (amd64, pv) accepted."""
    parts = value.split("/")
    if len(parts) != 3 or not all(parts):
        raise bad_request(
            errors.BAD_INSTANCE, f"instance: {_short(value)!r} is not ARCH/HV_TYPE/VM_MODE"
        )
    checks = (
        ("architecture", vocabulary.canonical_arch),
        ("hypervisor type", vocabulary.canonical_hv_type),
        ("VM mode", vocabulary.canonical_vm_mode),
    )
    out = []
    for part, (what, canonical) in zip(parts, checks, strict=True):
        name, known = canonical(part)
        if not known:
            raise bad_request(errors.BAD_INSTANCE, f"instance: unknown {what} {_short(part)!r}")
        out.append(name)
    return out[0], out[1], out[2]


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _b64decode(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_cursor(kind: str, after: int) -> str:
    return _b64encode(f"{kind}:{after}".encode())


def decode_cursor(kind: str, cursor: str) -> int:
    """The last row id of the previous page; a cursor of another listing is refused."""
    try:
        prefix, _, after = _b64decode(cursor).decode("ascii").partition(":")
        if prefix != kind or not after.isdigit() or len(after) > 10 or int(after) > MAX_ROW_ID:
            raise ValueError(cursor)
        return int(after)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise bad_request(
            errors.BAD_CURSOR, "cursor: not a cursor of this listing (use next_cursor as given)"
        ) from None


def encode_host_ref(target: str, host_id: str) -> str:
    """The API's host id: base64url of ``target NUL host_id``.

    Stable for as long as the target's name and the hypervisor's host id are (it is derived from
    them, not from a database row), the same on every replica, and URL-safe. NUL cannot appear in
    either part (PostgreSQL text cannot hold it), so the split is unambiguous.
    """
    return _b64encode(target.encode() + b"\x00" + host_id.encode())


def decode_host_ref(ref: str) -> tuple[str, str] | None:
    """``(target, host_id)`` of an id made by :func:`encode_host_ref`, or None.

    An id holding a second NUL was not made here and can never name a host: a 400.
    """
    try:
        target, sep, host_id = _b64decode(ref).decode("utf-8").partition("\x00")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    if not sep or not target or not host_id:
        return None
    if "\x00" in host_id:
        raise bad_request(errors.BAD_HOST_ID, f"host: {_short(ref)!r} is not a host id")
    return target, host_id


def not_found(ref: str) -> ApiError:
    return ApiError(404, errors.HOST_NOT_FOUND, f"no host has id {_short(ref)!r}")
