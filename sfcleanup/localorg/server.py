"""`sfcleanup localorg serve`: a seeded local org over HTTPS (`https.LocalOrgServer`) from the command line.

Prints one JSON line with the instance URL, the access token and the CA bundle once it accepts connections, and
stops cleanly on SIGTERM or SIGINT. `python -m sfcleanup.localorg.server` runs the same.
"""

from __future__ import annotations

import argparse
import json
import signal
import sqlite3
import sys
import threading
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from pydantic import ValidationError

from sfcleanup.localorg import schema, seed
from sfcleanup.localorg.app import LocalOrg
from sfcleanup.localorg.faults import FaultProfile, LatencyModel
from sfcleanup.localorg.https import HOST, LocalOrgServer
from sfcleanup.localorg.store import Store


class _ArgumentError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not argparse's usage block: callers (scripts, the benchmark) read stderr line by line.
        raise _ArgumentError(message)


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a rate between 0 and 1")
    return value


def _count(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below {minimum}")
        return value

    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def _port(text: str) -> int:
    value = _count(0)(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port")
    return value


def _picklist_value(text: str) -> tuple[tuple[str, str], str]:
    """OBJECT.FIELD=VALUE: a picklist value this org's admin has not added, e.g.
    blng__InvoiceRun__c.blng__CleanUpStatus__c=Completed with errors."""
    target, sep, value = text.partition("=")
    sobject_name, dot, field_name = target.partition(".")
    spec = schema.sobject(sobject_name)
    field = spec.field(field_name) if spec is not None and dot else None
    if not sep or not value or spec is None or field is None or not field.picklist:
        raise argparse.ArgumentTypeError(f"{text!r} is not OBJECT.FIELD=VALUE naming a picklist field of the schema")
    if value not in field.picklist:
        raise argparse.ArgumentTypeError(f"{value!r} is not a value of {spec.name}.{field.name}")
    return (spec.name, field.name), value


def _parser() -> _Parser:
    parser = _Parser(
        prog="sfcleanup localorg serve",
        description="Serve a seeded local Salesforce Billing org over HTTPS on 127.0.0.1.",
    )
    parser.add_argument("--port", type=_port, default=0, help="TCP port; 0 picks a free one (default)")
    parser.add_argument("--scenario", choices=seed.SCENARIOS, default="demo", help="what to seed (default demo)")
    parser.add_argument("--records", type=_count(1), help="billing sources for the scale scenario")
    parser.add_argument("--token", help="the access token to accept (default: a random one)")
    parser.add_argument("--state", type=Path, help="SQLite file to keep the org in; seeded only when empty")
    parser.add_argument(
        "--production", action="store_true", help="a new org plays a production org (default: a sandbox)"
    )
    parser.add_argument("--faults", type=Path, help="a fault profile (TOML, fields of FaultProfile)")
    parser.add_argument("--latency", choices=("cloud", "none"), help="simulated latency (default: the profile's)")
    parser.add_argument("--lock-failure-rate", type=_rate)
    parser.add_argument("--unavailable-rate", type=_rate)
    parser.add_argument("--reset-after-write-rate", type=_rate)
    parser.add_argument("--session-expiry-after-calls", type=_count(1))
    parser.add_argument("--daily-api-limit", type=_count(1))
    parser.add_argument("--lock-wait-s", type=_seconds)
    parser.add_argument("--seed", type=_count(0), help="seed of the fault RNG")
    parser.add_argument(
        "--without-picklist-value",
        type=_picklist_value,
        action="append",
        default=[],
        metavar="OBJECT.FIELD=VALUE",
        help="rehearse an org whose admin never added this picklist value (repeatable)",
    )
    return parser


_PROFILE_FLAGS = (
    "lock_failure_rate",
    "unavailable_rate",
    "reset_after_write_rate",
    "session_expiry_after_calls",
    "daily_api_limit",
    "lock_wait_s",
    "seed",
)


def _profile(args: argparse.Namespace) -> FaultProfile:
    """The TOML profile (if any), then the flags given on top of it."""
    base = FaultProfile()
    if args.faults is not None:
        try:
            base = FaultProfile.from_toml(args.faults)
        except (OSError, tomllib.TOMLDecodeError, ValidationError) as exc:
            raise ValueError(f"--faults {args.faults}: {_one_line(exc)}") from None
    overrides: dict[str, Any] = {
        name: getattr(args, name) for name in _PROFILE_FLAGS if getattr(args, name) is not None
    }
    if args.latency is not None:
        overrides["latency"] = LatencyModel.cloud() if args.latency == "cloud" else LatencyModel()
    return FaultProfile.model_validate({**base.model_dump(), **overrides})


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "profile"
        return f"{where}: {first['msg']}"
    return " ".join(str(exc).split()) or type(exc).__name__


def serve_main(argv: Sequence[str] | None = None) -> int:
    """`sfcleanup localorg serve`: exit 0 after SIGTERM/SIGINT, 2 on bad arguments (one line on stderr)."""
    prog = "sfcleanup localorg serve"
    try:
        args = _parser().parse_args(argv)
        seed.check_records(args.scenario, args.records)
        profile = _profile(args)
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    except (_ArgumentError, ValueError) as exc:
        print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
        return 2

    try:
        store = Store(args.state)
    except (sqlite3.Error, OSError) as exc:
        print(f"{prog}: error: cannot open --state {args.state}: {_one_line(exc)}", file=sys.stderr)
        return 2
    try:
        # A --state file that already holds an org is served as it is: re-seeding would undo a rehearsal.
        if store.count_all() == 0:
            seed.seed(store, args.scenario, records=args.records, production=args.production)
        for key, value in args.without_picklist_value:
            removed = store.removed_picklist_values.get(key, frozenset())
            store.removed_picklist_values[key] = removed | {value}
        org = LocalOrg(store, faults=profile, access_token=args.token)
        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            try:
                server = LocalOrgServer(org, port=args.port)
            except OSError as exc:
                print(f"{prog}: error: cannot listen on {HOST}:{args.port}: {_one_line(exc)}", file=sys.stderr)
                return 2
            with server:
                announcement = {
                    "instance_url": server.instance_url,
                    "access_token": org.access_token,
                    "ca_bundle": str(server.ca_bundle),
                }
                print(json.dumps(announcement), flush=True)
                # A bounded wait, so the signal handler's flag is seen even where a blocking wait is not woken.
                while not stop.wait(0.5):
                    pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(serve_main())
