"""All configuration, read once by the CLI (or built directly by tests) and passed down.

Sources, highest precedence first: arguments, environment, ``.env``, then SSM Parameter Store when
``STRATOCHAT_SSM_PATH`` is set (``<path>/<VARIABLE_NAME>``, SecureStrings decrypted).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _env(name: str) -> AliasChoices:
    """A field read from a variable of the original project, without the STRATOCHAT_ prefix."""
    return AliasChoices(name)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="STRATOCHAT_",
        env_file=".env",
        extra="ignore",
        validate_by_name=True,
        validate_by_alias=True,
    )

    # serving
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64)
    public_url: str | None = None
    allowed_origins: str = ""
    forwarded_allow_ips: str = "127.0.0.1"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    node_id: str | None = None

    # storage
    data_dir: Path = Path("./data")
    store: Literal["sqlite", "dynamodb"] = "sqlite"
    table_prefix: str = ""

    # accounts
    session_ttl: float = Field(3600, gt=0)
    login_max_failures: int = Field(10, ge=0)
    login_ip_max_failures: int = Field(100, ge=0)
    login_failure_window: float = Field(300, gt=0)
    secret_key: str | None = Field(None, validation_alias=_env("SECRET_KEY"))

    # chats and messages
    max_message_chars: int = Field(4000, ge=1, le=100_000)
    max_group_members: int = Field(100, ge=2, le=10_000)
    ws_max_frame_bytes: int | None = Field(None, ge=1024)
    ws_send_queue: int = Field(2048, ge=16)

    # tiers
    free_daily_messages: int | None = Field(1000, ge=0)
    premium_daily_messages: int | None = Field(None, ge=0)
    burst_rate: float = Field(10, ge=0)
    burst_size: int = Field(30, ge=1)
    free_storage_bytes: int = Field(52_428_800, ge=0)
    free_max_file_bytes: int = Field(2_097_152, ge=0)
    premium_storage_bytes: int = Field(5_368_709_120, ge=0)
    premium_max_file_bytes: int = Field(26_214_400, ge=0)
    file_url_ttl: float = Field(300, gt=0)

    # cloud backends (unset: embedded defaults)
    aws_default_region: str | None = Field(None, validation_alias=_env("AWS_DEFAULT_REGION"))
    redis_cluster_endpoint: str | None = Field(None, validation_alias=_env("REDIS_CLUSTER_ENDPOINT"))
    s3_bucket_name: str | None = Field(None, validation_alias=_env("S3_BUCKET_NAME"))
    cognito_user_pool_id: str | None = Field(None, validation_alias=_env("COGNITO_USER_POOL_ID"))
    cognito_app_client_id: str | None = Field(None, validation_alias=_env("COGNITO_APP_CLIENT_ID"))
    cognito_app_client_secret: str | None = Field(None, validation_alias=_env("COGNITO_APP_CLIENT_SECRET"))
    cognito_domain: str | None = Field(None, validation_alias=_env("COGNITO_DOMAIN"))
    oidc_issuer_url: str | None = Field(None, validation_alias=_env("OIDC_ISSUER_URL"))
    oidc_client_id: str | None = Field(None, validation_alias=_env("OIDC_CLIENT_ID"))
    oidc_client_secret: str | None = Field(None, validation_alias=_env("OIDC_CLIENT_SECRET"))
    ssm_path: str | None = None

    @field_validator(
        "public_url",
        "secret_key",
        "redis_cluster_endpoint",
        "s3_bucket_name",
        "ssm_path",
        "cognito_user_pool_id",
        "cognito_app_client_id",
        "cognito_app_client_secret",
        "cognito_domain",
        "oidc_issuer_url",
        "oidc_client_id",
        "oidc_client_secret",
        "aws_default_region",
        "node_id",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("free_daily_messages", "premium_daily_messages", mode="before")
    @classmethod
    def _unlimited(cls, value: object) -> object:
        # "", "none" and "unlimited" mean no daily limit.
        if isinstance(value, str) and value.strip().lower() in ("", "none", "null", "unlimited"):
            return None
        return value

    @field_validator("public_url")
    @classmethod
    def _origin_only(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http(s) origin such as https://chat.example.com")
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def extra_origins(self) -> list[str]:
        origins = [o.strip().rstrip("/") for o in self.allowed_origins.split(",") if o.strip()]
        if self.public_url:
            origins.append(self.public_url)
        return origins

    @property
    def frame_limit_bytes(self) -> int:
        # Room for the largest legal message with every character escaped as \\uXXXX, plus the envelope.
        return self.ws_max_frame_bytes or max(65_536, self.max_message_chars * 12 + 4096)

    @property
    def database_path(self) -> Path:
        return self.data_dir / "stratochat.db"
