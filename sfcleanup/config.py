"""Settings: a TOML file (`--config`), `SFCLEANUP_` environment variables and flags, in rising precedence.

All models are frozen and reject unknown keys, so a typo in a key is an error, not a silently ignored line.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from contextvars import ContextVar
from enum import StrEnum
from pathlib import Path
from typing import Literal, TypedDict, Unpack

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from sfcleanup.errors import ConfigError

_CONFIG_FILE: ContextVar[Path | None] = ContextVar("_CONFIG_FILE", default=None)


class AuthMode(StrEnum):
    JWT = "jwt"
    CLIENT_CREDENTIALS = "client_credentials"
    TOKEN = "token"  # noqa: S105 - the name of an auth mode, not a secret
    SF_CLI = "sf_cli"
    PASSWORD = "password"  # noqa: S105 - the name of an auth mode, not a secret
    LOCAL = "local"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _secret_from(value: SecretStr | None, path: Path | None, name: str) -> SecretStr | None:
    """A secret given inline or as a mounted file (`..._file`), as container platforms provide them."""
    if path is None:
        return value
    try:
        return SecretStr(path.read_text(encoding="utf-8").strip())
    except OSError as exc:
        raise ValueError(f"{name}_file {path} cannot be read: {exc.strerror}") from None


class OrgSettings(_Frozen):
    auth: AuthMode | None = None
    # login.salesforce.com, test.salesforce.com (sandboxes) or the org's My Domain URL.
    login_url: str = "https://login.salesforce.com"
    instance_url: str | None = None
    access_token: SecretStr | None = None
    access_token_file: Path | None = None
    consumer_key: str | None = None
    consumer_secret: SecretStr | None = None
    consumer_secret_file: Path | None = None
    private_key_file: Path | None = None
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    security_token: SecretStr | None = None
    target_org: str | None = None
    api_version: str = Field(default="62.0", pattern=r"^\d{2}\.0$")
    ca_bundle: Path | None = None
    timeout_s: float = Field(default=120.0, gt=0, le=600)
    # The embedded local org: a state file to use instead of the demo scenario.
    local_state: Path | None = None
    # The embedded local org plays a sandbox, or production (`--org local-production`); a new org only.
    local_production: bool = False

    @model_validator(mode="after")
    def _resolve(self) -> OrgSettings:
        for name in ("access_token", "consumer_secret", "password"):
            path = getattr(self, f"{name}_file")
            object.__setattr__(self, name, _secret_from(getattr(self, name), path, name))
        if self.auth is None:
            object.__setattr__(self, "auth", self._infer_auth())
        return self

    def _infer_auth(self) -> AuthMode | None:
        if self.access_token is not None and self.instance_url:
            return AuthMode.TOKEN
        if self.target_org:
            return AuthMode.SF_CLI
        if self.private_key_file and self.consumer_key and self.username:
            return AuthMode.JWT
        if self.password is not None and self.username:
            return AuthMode.PASSWORD
        if self.consumer_key and self.consumer_secret is not None:
            return AuthMode.CLIENT_CREDENTIALS
        return None


class WriteSettings(_Frozen):
    # auto: Composite below bulk_threshold records per object, Bulk API 2.0 from there on.
    route: Literal["auto", "composite", "bulk"] = "auto"
    bulk_threshold: int = Field(default=15_000, ge=1)
    # Bulk API 2.0 jobs an object's records are split into, running at once on disjoint accounts.
    bulk_jobs_per_object: int = Field(default=3, ge=1, le=5)
    # A Bulk API 2.0 job is split into at least this many records (Salesforce processes 10,000 a batch).
    bulk_min_records_per_job: int = Field(default=10_000, ge=1)
    batch_size: int = Field(default=200, ge=1, le=200)
    collections_per_call: int = Field(default=5, ge=1, le=5)
    # Composite calls in flight at the start; the level then adapts (up to 25) to the org's answers. Calls in
    # flight never share a lock point (an account).
    max_in_flight: int = Field(default=4, ge=1, le=16)
    # Bulk API 2.0 polling: pauses grow by half from 0.5 s up to this (a job showing progress is asked again when
    # it should be done, its wait slept in slices of this); a job not done by the deadline stops the run.
    bulk_poll_max_s: float = Field(default=5.0, gt=0, le=120)
    bulk_timeout_s: float = Field(default=3600.0, gt=0)
    lock_retry_rounds: int = Field(default=5, ge=0, le=20)
    lock_retry_batch_size: int = Field(default=50, ge=1, le=200)
    # Pause before each lock retry round, multiplied by the round number. Salesforce has already waited up to
    # 10 s for the lock before refusing the row, so a short pause is enough to let the holder finish.
    lock_retry_pause_s: float = Field(default=0.25, ge=0, le=60)
    # The first batch of each phase: written, read back and compared with what was sent before the rest goes.
    canary_records: int = Field(default=10, ge=1, le=200)


class RetrySettings(_Frozen):
    max_attempts: int = Field(default=6, ge=1, le=50)
    deadline_s: float = Field(default=300.0, gt=0)
    backoff_initial_s: float = Field(default=1.0, ge=0)
    backoff_max_s: float = Field(default=30.0, ge=0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SFCLEANUP_",
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
        nested_model_default_partial_update=True,
    )

    org: OrgSettings = OrgSettings()
    write: WriteSettings = WriteSettings()
    retry: RetrySettings = RetrySettings()
    journal_dir: Path = Path("sfcleanup-journal")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    # Never leave less than this share of the daily API allowance to the rest of the business.
    api_reserve: float = Field(default=0.2, ge=0, lt=1)
    # Write each row that finally failed to the run's Error Logs (blng__ErrorLog__c), as the package does.
    error_logs: bool = True
    # Who this worker is, in the run's lease (default: user@host:journal_dir, stable across restarts).
    worker_id: str | None = Field(default=None, min_length=1, max_length=200)
    # A lease not renewed for this long belongs to a worker that died: another may take it over.
    lease_timeout_s: float = Field(default=900.0, ge=60)
    # Writing to a production org (Organization.IsSandbox false) needs --production, or this for a scheduled job.
    allow_production: bool = False
    # Refuse, before writing, a run or sweep that would change more records than this (--max-changes).
    max_changes: int | None = Field(default=None, ge=1)
    # A sweep's cap when neither max_changes nor --max-changes says otherwise: about one very large run.
    sweep_max_changes: int = Field(default=250_000, ge=1)
    # `run --plan` refuses a plan file made longer ago than this (seconds): the org has moved on since.
    plan_max_age_s: float = Field(default=86_400.0, gt=0)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = _CONFIG_FILE.get()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


def _first_error(exc: ValidationError, origin: str) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "settings"
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        message = "unknown setting (check its spelling against config/sfcleanup.example.toml)"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{origin}: {where}: {message}{more}"


class Overrides(TypedDict, total=False):
    """Settings given in code or by flags, above the file and the environment; a section may be given in part
    (a mapping of some of its keys). `Settings` validates every value."""

    org: OrgSettings | Mapping[str, object]
    write: WriteSettings | Mapping[str, object]
    retry: RetrySettings | Mapping[str, object]
    journal_dir: Path | str
    log_level: str
    log_format: str
    api_reserve: float
    error_logs: bool
    worker_id: str | None
    lease_timeout_s: float
    allow_production: bool
    max_changes: int | None
    sweep_max_changes: int
    plan_max_age_s: float


def load_settings(config_file: Path | None = None, **overrides: Unpack[Overrides]) -> Settings:
    """Load and validate settings once, at start; raises ConfigError with a one-line message."""
    origin = str(config_file) if config_file else "settings"
    if config_file is not None:
        if not config_file.is_file():
            raise ConfigError(f"config file {config_file} does not exist; create one with `sfcleanup config init`")
        try:
            with config_file.open("rb") as handle:
                tomllib.load(handle)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{config_file} is not valid TOML: {exc}") from None
    token = _CONFIG_FILE.set(config_file)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_first_error(exc, origin)) from None
    finally:
        _CONFIG_FILE.reset(token)
