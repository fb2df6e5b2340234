"""Settings: the example file documents every key, precedence is flags > environment > file, and bad input
gives one line naming the key."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from sfcleanup.config import AuthMode, Settings, load_settings
from sfcleanup.errors import ConfigError

EXAMPLE = Path(__file__).parent.parent / "config" / "sfcleanup.example.toml"


def _keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    keys = set()
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys |= _keys(annotation, f"{prefix}{name}.")
        else:
            keys.add(prefix + name)
    return keys


def _documented() -> set[str]:
    """Keys set or shown commented-out in the example, with their section."""
    keys, section = set(), ""
    for line in EXAMPLE.read_text().splitlines():
        header = re.match(r"^\[(\w+)\]", line)
        if header:
            section = header.group(1) + "."
            continue
        key = re.match(r"^#?\s?(\w+) = ", line)
        if key:
            keys.add(section + key.group(1))
    return keys


def test_example_documents_every_setting() -> None:
    """Every settings key appears in config/sfcleanup.example.toml, and nothing else does."""
    assert _documented() == _keys(Settings)


def test_example_loads(tmp_path: Path) -> None:
    """The example file itself is valid settings (JWT inferred from its keys)."""
    settings = load_settings(EXAMPLE)
    assert settings.org.auth is AuthMode.JWT
    assert settings.write.batch_size == 200


def test_precedence_flags_over_environment_over_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A flag beats SFCLEANUP_ variables, which beat the file."""
    path = tmp_path / "s.toml"
    path.write_text("[write]\nbatch_size = 100\nlock_retry_rounds = 2\n[retry]\nmax_attempts = 3\n")
    monkeypatch.setenv("SFCLEANUP_WRITE__BATCH_SIZE", "150")
    monkeypatch.setenv("SFCLEANUP_RETRY__MAX_ATTEMPTS", "4")
    settings = load_settings(path, retry={"max_attempts": 5})
    assert (settings.write.batch_size, settings.write.lock_retry_rounds, settings.retry.max_attempts) == (150, 2, 5)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[write]\nbatch_sise = 10\n", r"write\.batch_sise: unknown setting"),
        ("[write]\nbatch_size = 201\n", r"write\.batch_size: Input should be less than or equal to 200"),
        ("[org\n", "is not valid TOML"),
        ("log_level = 'loud'\n", "log_level"),
        ("[org]\napi_version = 'v62'\n", "org.api_version"),
    ],
)
def test_bad_settings_give_one_line(tmp_path: Path, text: str, message: str) -> None:
    """A mistyped key, a value out of range or broken TOML is a ConfigError of one line naming the problem."""
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as caught:
        load_settings(path)
    assert "\n" not in str(caught.value)


def test_missing_config_file_says_how_to_create_one(tmp_path: Path) -> None:
    """A --config path that does not exist is reported with the command that writes one."""
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_secret_files_are_read_and_stay_secret(tmp_path: Path) -> None:
    """*_file settings read the secret from a mounted file, and it never shows in the settings' repr."""
    secret = tmp_path / "secret"
    secret.write_text("s3cr3t-value\n")
    settings = load_settings(
        None, org={"consumer_key": "k", "consumer_secret_file": secret, "login_url": "https://acme.my.salesforce.com"}
    )
    assert settings.org.auth is AuthMode.CLIENT_CREDENTIALS
    assert settings.org.consumer_secret is not None
    assert settings.org.consumer_secret.get_secret_value() == "s3cr3t-value"
    assert "s3cr3t" not in repr(settings)


def test_example_is_toml() -> None:
    """The example parses as TOML on its own."""
    assert "org" in tomllib.loads(EXAMPLE.read_text())
