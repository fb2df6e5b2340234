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
def _lock_entries() -> dict[str, tuple[str, str, list[str]]]:
    """requirements.lock as {canonical name: (the pin, the version, its sha256 hashes)}; a pin's hashes follow
    it on continuation lines."""
    entries: dict[str, tuple[str, str, list[str]]] = {}
    text = LOCK.read_text(encoding="utf-8").replace("\\\n", " ")
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pin, *options = line.split()
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!-]+)", pin)
        assert match, f"requirements.lock: {pin!r} is not pinned as name==version"
        hashes = [option.removeprefix("--hash=sha256:") for option in options]
        assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), f"requirements.lock: {line[:80]}"
        name = canonicalize_name(match.group(1))
        assert name not in entries, f"requirements.lock: {name} twice"
        entries[name] = (pin, match.group(2), hashes)
    return entries


def _lock() -> dict[str, tuple[str, str]]:
    """requirements.lock as {canonical name: (the pin, the pinned version)}."""
    return {name: (pin, version) for name, (pin, version, _) in _lock_entries().items()}


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
    assert any(re.search(r"--require-hashes -r \S*requirements\.lock\b", part) for part in installs), (
        "the lock is not installed with --require-hashes"
    )
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


WORKFLOW = ROOT / "deploy" / "github-actions" / "sfcleanup-sweep.yml"


def test_every_pin_has_hashes_and_the_image_checks_them() -> None:
    """Each locked package carries its sha256 hashes, so `pip install --require-hashes` accepts the lock; the
    Dockerfile and the workflow install it that way."""
    assert all(hashes for _, _, hashes in _lock_entries().values())
    assert "--require-hashes -r requirements.lock" in WORKFLOW.read_text(encoding="utf-8")


def test_the_local_org_and_trustme_stay_out_of_the_image() -> None:
    """trustme is an optional extra, not a dependency nor in the lock; the image deletes the local org package."""
    project = _pyproject()["project"]
    runtime = {canonicalize_name(Requirement(text).name) for text in project["dependencies"]}
    assert "trustme" not in runtime and "trustme" not in _lock()
    assert any(Requirement(text).name == "trustme" for text in project["optional-dependencies"]["localorg"])
    runs = " ".join(arguments for name, arguments in _instructions() if name == "RUN")
    assert re.search(r"rm -rf \"\$\(python -I -c '[^']*sfcleanup[^']*\"localorg\"\)'\)\"", runs), runs


def test_without_the_local_org_its_commands_say_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Where the local org is left out (the image), `--org local`, `demo` and `localorg serve` exit 2 with one
    line; every other command still imports."""
    import sys

    from sfcleanup.cli import main

    for name in [n for n in sys.modules if n.startswith("sfcleanup.localorg")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "sfcleanup.localorg", None)
    monkeypatch.setitem(sys.modules, "trustme", None)
    for name in ("sfcleanup.salesforce.local", "sfcleanup.demo"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    for argv in (["plan", "a1A5g0000000001EAA", "--org", "local"], ["demo"], ["localorg", "serve"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert "production image leaves the local org out" in err and "\n" not in err


def test_every_example_names_a_stable_worker(tmp_path: Path) -> None:
    """The docker run example, the CronJob and the workflow each set SFCLEANUP_WORKER_ID to a fixed value, so a
    restarted container resumes its lease instead of waiting it out."""
    assert re.search(r"-e SFCLEANUP_WORKER_ID=[\w/.-]+", DOCKERFILE.read_text(encoding="utf-8"))
    assert re.search(r"name: SFCLEANUP_WORKER_ID\n\s+value: \"[\w/.-]+\"", CRONJOB.read_text(encoding="utf-8"))
    assert re.search(r"\n\s+SFCLEANUP_WORKER_ID: [\w/.-]+\n", WORKFLOW.read_text(encoding="utf-8"))


def _bytes(quantity: str) -> int:
    number, unit = re.fullmatch(r"(\d+)(Ki|Mi|Gi)?", quantity).groups()  # type: ignore[union-attr]
    return int(number) * {None: 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}[unit]


def test_the_cronjob_tmp_holds_the_plan_of_a_million_sources() -> None:
    """The plan store's size per source, measured on a generated run, times a million fits the CronJob's /tmp."""
    from sfcleanup import preflight
    from sfcleanup.localorg.app import LocalOrg
    from sfcleanup.localorg.faults import FaultProfile
    from sfcleanup.localorg.seed import seed
    from sfcleanup.localorg.store import Store
    from sfcleanup.salesforce.read import plan_streaming
    from tests.support import make_client

    sources = 2_000
    store = Store()
    info = seed(store, "scale", records=sources)
    client = make_client(LocalOrg(store, faults=FaultProfile(short_page_rate=0)))
    readiness = preflight.check_org(client)
    runs, _ = preflight.check_runs(client, list(info.runs.values())[:1], readiness, include_completed=True)
    plan, _ = plan_streaming(client, runs[0])
    used = sum(f.stat().st_size for f in plan.dependencies.directory.rglob("*") if f.is_file())
    size_limits = re.findall(r"- name: tmp\n(?:\s+#.*\n)*\s+emptyDir:\n\s+sizeLimit: (\S+)", CRONJOB.read_text())
    assert len(size_limits) == 1 and used > 0
    assert _bytes(size_limits[0]) >= used / sources * 1_000_000 * 1.2


def test_the_workflow_keeps_journals_and_maps_every_exit_code() -> None:
    """Journals are restored before the sweep and saved after it whatever happened; exit 0 passes, 1 warns, 2
    fails at once, 3 warns on the nightly slot and fails on the retry slot, anything else fails."""
    text = WORKFLOW.read_text(encoding="utf-8")
    steps = ("actions/cache/restore@", 'sfcleanup "${args[@]}"', "actions/cache/save@")
    restore, sweep, save = (text.index(step) for step in steps)
    assert restore < sweep < save
    assert re.search(r"if: always\(\)\n\s+uses: actions/cache/save@v\d+\n\s+with:\n\s+path: sfcleanup-journal", text)
    arms = dict(re.findall(r"\n\s+(\d|\*)\)\n(.*?);;", text, flags=re.DOTALL))
    assert set(arms) == {"0", "1", "2", "3", "*"}
    assert "exit" not in arms["0"] and "exit" not in arms["1"] and "::warning" in arms["1"]
    assert "exit 2" in arms["2"] and 'exit "$code"' in arms["*"]
    assert "RETRY_SLOT" in arms["3"] and "exit 3" in arms["3"] and "::warning" in arms["3"]
