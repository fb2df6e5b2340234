"""The container image and the deployment files agree with the real CLI, settings and dependencies."""

from __future__ import annotations

import importlib
import json
import re
import tomllib
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from pydantic import BaseModel

from sfcleanup.cli import build_parser
from sfcleanup.config import Settings
from sfcleanup.lease import LEASE_CODE, RELEASED_CODE

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
LOCK = ROOT / "requirements.lock"
CRONJOB = ROOT / "deploy" / "kubernetes" / "cronjob.yaml"
# Files that name settings as environment variables; each name must be a real settings key.
ENV_FILES = (DOCKERFILE, *sorted((ROOT / "deploy").rglob("*.y*ml")), ROOT / "docs" / "runbook.md")
# The environment the image runs in, for evaluating dependency markers (python:3.11-slim on Linux).
IMAGE_ENVIRONMENT: dict[str, str] = {
    **{key: str(value) for key, value in default_environment().items()},
    "sys_platform": "linux",
    "platform_system": "Linux",
}


def _instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        result.append((keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends in a continuation line"
    return result


def _exec_form(keyword: str) -> list[str]:
    """The last ENTRYPOINT or CMD (the final stage's), which must be a JSON array of strings."""
    values = [arguments for name, arguments in _instructions() if name == keyword]
    assert values, f"no {keyword} in the Dockerfile"
    parsed = json.loads(values[-1])
    assert isinstance(parsed, list) and all(isinstance(item, str) for item in parsed), f"{keyword} is not exec form"
    return [str(item) for item in parsed]


def _parse_cli(argv: list[str], where: str) -> Any:
    try:
        return build_parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"{where}: `sfcleanup {' '.join(argv)}` is rejected by the CLI (exit {exc.code})")


@cache
def _pyproject() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as handle:
        return tomllib.load(handle)


@cache
def _lock() -> dict[str, tuple[str, str]]:
    """requirements.lock as {canonical name: (the line, the pinned version)}."""
    pins: dict[str, tuple[str, str]] = {}
    for raw in LOCK.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!-]+)", line)
        assert match, f"requirements.lock: {line!r} is not pinned as name==version"
        name = canonicalize_name(match.group(1))
        assert name not in pins, f"requirements.lock: {name} twice"
        pins[name] = (line, match.group(2))
    return pins


def _settings_env_names(model: type[BaseModel], prefix: str, delimiter: str) -> set[str]:
    """Every leaf setting as the environment variable that sets it (SFCLEANUP_ORG__PRIVATE_KEY_FILE)."""
    names = set()
    for field_name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names |= _settings_env_names(annotation, f"{prefix}{field_name.upper()}{delimiter}", delimiter)
        else:
            names.add(f"{prefix}{field_name.upper()}")
    return names


def test_entrypoint_is_the_console_script() -> None:
    """ENTRYPOINT runs the console script pyproject.toml declares, and that script's target exists."""
    scripts: dict[str, str] = _pyproject()["project"]["scripts"]
    entrypoint = _exec_form("ENTRYPOINT")
    assert len(entrypoint) == 1 and entrypoint[0] in scripts, f"ENTRYPOINT {entrypoint} is not one of {scripts}"
    module, _, attribute = scripts[entrypoint[0]].partition(":")
    assert callable(getattr(importlib.import_module(module), attribute))


def test_cmd_is_accepted_by_the_real_cli() -> None:
    """CMD parses with sfcleanup's own argument parser (it needs the `sweep` subcommand)."""
    command = _exec_form("CMD")
    args = _parse_cli(command, "Dockerfile CMD")
    assert args.command == command[0]
    assert callable(args.handler)


def test_cronjob_args_are_accepted_by_the_real_cli() -> None:
    """The CronJob's container args (a JSON-style list) parse with sfcleanup's own argument parser."""
    lines = [line for line in CRONJOB.read_text(encoding="utf-8").splitlines() if line.strip().startswith("args:")]
    assert len(lines) == 1, "expected one `args: [...]` line in the CronJob"
    argv = json.loads(lines[0].split(":", 1)[1])
    assert _parse_cli(argv, "cronjob.yaml args").command == "sweep"


def test_settings_variables_name_real_settings() -> None:
    """Every SFCLEANUP_* variable in the Dockerfile, deploy/ files and the runbook is a real settings key."""
    config = Settings.model_config
    prefix, delimiter = str(config.get("env_prefix")), str(config.get("env_nested_delimiter"))
    known = _settings_env_names(Settings, prefix, delimiter)
    assert f"{prefix}ORG{delimiter}PRIVATE_KEY_FILE" in known  # the walk reaches nested settings
    used: dict[str, set[str]] = {}
    for path in ENV_FILES:
        if path.exists():
            for name in re.findall(rf"\b{prefix}[A-Z0-9_]*[A-Z0-9]", path.read_text(encoding="utf-8")):
                used.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    assert any("deploy" in where for places in used.values() for where in places), "no settings found in deploy/"
    # The lease's error codes in the org share the prefix; they are values, not settings.
    unknown = {name: sorted(places) for name, places in used.items() if name not in known | {LEASE_CODE, RELEASED_CODE}}
    assert not unknown, f"not settings keys: {unknown}"


def test_requirements_are_pinned_exactly() -> None:
    """requirements.lock pins every package with ==, and the Dockerfile installs nothing unpinned."""
    assert _lock()
    runs = [arguments for name, arguments in _instructions() if name == "RUN"]
    installs = [part for run in runs for part in re.split(r"&&|;", run) if re.search(r"\bpip3? install\b", part)]
    assert any(re.search(r"-r \S*requirements\.lock\b", part) for part in installs), "the lock is not installed"
    for part in installs:
        words = part.split()[part.split().index("install") + 1 :]
        if "-r" in words:
            assert words[words.index("-r") + 1].endswith("requirements.lock"), part
            continue
        packages = [word for word in words if not word.startswith("-")]
        if "--no-deps" in words and all(word == "." or word.endswith(".whl") for word in packages):
            continue  # sfcleanup itself, whose dependencies come from the lock
        assert all("==" in word for word in packages), f"unpinned install: {part.strip()}"


def test_lock_satisfies_the_declared_dependencies() -> None:
    """Each runtime dependency in pyproject.toml (extras included) is locked at a version its range allows."""
    pins = _lock()
    for text in _pyproject()["project"]["dependencies"]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not in requirements.lock"
        assert requirement.specifier.contains(pins[name][1], prereleases=True), f"{pins[name][0]} vs {text}"


def test_lock_holds_no_development_tools() -> None:
    """Nothing from the dev extra (tests, linters, type stubs) is in the image's lock."""
    extras: dict[str, list[str]] = _pyproject()["project"]["optional-dependencies"]
    dev = {canonicalize_name(Requirement(text).name) for text in extras["dev"]}
    locked = set(_lock())
    assert not locked & dev
    assert not {name for name in locked if name.startswith("types-")}


def test_lock_is_closed_under_dependencies() -> None:
    """Every dependency of a locked package is locked too (read from installed metadata of the same version)."""
    pins = _lock()
    checked = 0
    for name, (_, version) in pins.items():
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        if dist.version != version:
            continue  # another version is installed here: its metadata says nothing about the locked one
        checked += 1
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate({**IMAGE_ENVIRONMENT, "extra": ""}):
                continue
            assert canonicalize_name(requirement.name) in pins, f"{name} needs {requirement.name}, not locked"
    assert checked, "no locked package is installed at its locked version: regenerate requirements.lock"


def _pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex: `*` and `?` stay within one path element, `**` spans any number."""
    out = ""
    for token in re.split(r"(\*\*/?|\*|\?)", pattern.strip("/")):
        if token in ("**", "**/"):
            out += "(?:.*/)?" if token == "**/" else ".*"
        elif token == "*":
            out += "[^/]*"
        elif token == "?":
            out += "[^/]"
        else:
            out += re.escape(token)
    return re.compile(out)


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore leaves `path` (or a folder above it) out of the build context; last match wins."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        regex = _pattern(pattern.removeprefix("!"))
        if any(regex.fullmatch(candidate) for candidate in candidates):
            ignored = not negated
    return ignored


def test_build_context_keeps_what_the_image_copies() -> None:
    """Every file or folder the Dockerfile COPYs from the context exists and is not excluded by .dockerignore."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    sources = []
    for name, arguments in _instructions():
        words = arguments.split()
        if name == "COPY" and not any(word.startswith("--from") for word in words):
            sources += [word for word in words[:-1] if not word.startswith("--")]
    assert {"requirements.lock", "pyproject.toml", "README.md", "sfcleanup"} <= {s.rstrip("/") for s in sources}
    for source in sources:
        source = source.rstrip("/")
        assert (ROOT / source).exists(), f"COPY {source}: no such file"
        assert not _ignored(source, patterns), f"COPY {source}: excluded by .dockerignore"
    packaged = [p.relative_to(ROOT).as_posix() for p in (ROOT / "sfcleanup").rglob("*") if p.is_file()]
    left_out = [p for p in packaged if "__pycache__" not in p and _ignored(p, patterns)]
    assert not left_out, f"package files excluded by .dockerignore: {left_out}"
    for secret in ("sfcleanup.key", "config/org.pem", "sfcleanup-journal/a1A.jsonl", ".env", "sfcleanup.toml"):
        assert _ignored(secret, patterns), f"{secret} would be sent to the image build"


def test_image_runs_unprivileged_with_a_journal_volume() -> None:
    """The final stage runs as a non-root user and journals to the volume it declares."""
    instructions = _instructions()
    final = instructions[max(i for i, (name, _) in enumerate(instructions) if name == "FROM") :]
    users = [arguments for name, arguments in final if name == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    volumes = [json.loads(arguments) for name, arguments in final if name == "VOLUME"]
    env = " ".join(arguments for name, arguments in final if name == "ENV")
    journal = re.search(r"\bSFCLEANUP_JOURNAL_DIR=(\S+)", env)
    assert journal and [journal.group(1)] in volumes
    base = [arguments for name, arguments in instructions if name in ("ARG", "FROM")]
    assert any("python:3.11-slim" in arguments for arguments in base)
