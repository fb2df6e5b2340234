"""The typed boundary: Salesforce's JSON is parsed where it arrives, and no `Any` travels in a signature."""

from __future__ import annotations

import ast
import re
import typing
from collections import Counter
from pathlib import Path

import pytest
import requests
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sfcleanup import billing
from sfcleanup.config import Overrides, Settings, load_settings
from sfcleanup.errors import ConfigError
from sfcleanup.localorg.app import LocalOrg
from sfcleanup.localorg.seed import ScenarioInfo
from sfcleanup.salesforce.connect import jwt_login
from sfcleanup.salesforce.read import RUN_LINK, remaining_by_status
from sfcleanup.salesforce.shapes import counts_by_value, text_fields
from tests.support import make_client

PACKAGE = Path(__file__).resolve().parent.parent / "sfcleanup"
ANY = re.compile(r"\bAny\b")


def _signatures_with_any(path: Path, root: Path = PACKAGE.parent) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        arguments = node.args
        every = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs, arguments.vararg, arguments.kwarg]
        annotations = [a.annotation for a in every if a is not None and a.annotation is not None]
        if node.returns is not None:
            annotations.append(node.returns)
        if any(ANY.search(ast.unparse(annotation)) for annotation in annotations):
            found.append(f"{path.relative_to(root)}:{node.lineno} {node.name}")
    return found


def test_no_any_in_signatures_outside_the_client_helpers_and_the_local_org() -> None:
    """`Any` appears in no function signature but the client's private helpers over simple-salesforce (which is
    untyped) and the local org's."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "localorg" in path.relative_to(PACKAGE).parts:
            continue
        found += _signatures_with_any(path)
    allowed = re.compile(r"^sfcleanup/salesforce/client\.py:\d+ _")
    assert [f for f in found if not allowed.match(f)] == []


def test_the_any_guard_sees_every_place_a_signature_names_any(tmp_path: Path) -> None:
    """Parameters, *args, **kwargs, keyword-only parameters and return types are all looked at."""
    module = tmp_path / "sfcleanup" / "m.py"
    module.parent.mkdir()
    module.write_text(
        "def a(x: Any) -> None: ...\n"
        "def b(*xs: Any) -> None: ...\n"
        "def c(**kw: Any) -> None: ...\n"
        "def d(*, k: list[Any]) -> None: ...\n"
        "def e() -> dict[str, Any]: ...\n"
        "def f(x: object) -> Anything: ...\n"
    )
    assert [f.split()[1] for f in _signatures_with_any(module, tmp_path)] == ["a", "b", "c", "d", "e"]


def test_aggregate_counts_match_the_records(demo: tuple[LocalOrg, ScenarioInfo]) -> None:
    """The verify counts (one Composite call of aggregate queries, parsed by `counts_by_value`) say, per object
    and status, as many records linked to the run as the org holds."""
    org, info = demo
    run_id = info.runs["failed_run"]
    counted = remaining_by_status(make_client(org), run_id)
    snapshot = org.store.snapshot()
    for sobject, run_field in RUN_LINK.items():
        status_field = billing.RULE_BY_OBJECT[sobject].status_field
        held = Counter(str(r[status_field]) for r in snapshot[sobject] if r[run_field] == run_id)
        assert counted[sobject] == dict(held)
    assert sum(sum(by_status.values()) for by_status in counted.values()) > 0


def test_a_count_that_is_not_a_number_is_refused() -> None:
    """An aggregate answer whose count is not an integer is an error, never a silent zero."""
    answer = {"records": [{"blng__InvoiceStatus__c": "Draft", "n": "many"}], "done": True}
    with pytest.raises(ValueError, match="n"):
        counts_by_value(answer, "blng__InvoiceStatus__c")
    assert counts_by_value({"records": [], "done": True}, "blng__InvoiceStatus__c") == {}


def test_text_fields_keep_empty_fields_empty() -> None:
    """Picklists, Ids and dates come as text; an empty field stays None, not the text "None"."""
    record = {"Id": "a", "Status": "Draft", "Lookup": None, "Count": 3}
    assert text_fields(record, ["Status", "Lookup", "Missing", "Count"]) == {
        "Status": "Draft",
        "Lookup": None,
        "Missing": None,
        "Count": "3",
    }


@responses.activate
def test_a_key_other_than_rsa_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    """Salesforce's JWT bearer flow signs with RS256: an EC key is named in a one-line error, and nothing is sent."""
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "ec.pem"
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    settings = load_settings(
        None, org={"auth": "jwt", "consumer_key": "k", "username": "u@x", "private_key_file": str(path)}
    )
    with pytest.raises(ConfigError, match="is not an RSA key") as raised:
        jwt_login(settings.org, requests.Session())
    assert "\n" not in str(raised.value)
    assert len(responses.calls) == 0


def test_every_setting_can_be_overridden_with_its_type() -> None:
    """`load_settings`'s typed overrides name every top-level setting, so none needs an untyped escape hatch."""
    assert set(typing.get_type_hints(Overrides)) == set(Settings.model_fields)
