"""All configuration, read once by the CLI (or built directly by tests) and passed down.

Sources, highest precedence first: arguments, environment, ``.env``, then SSM Parameter Store when
``STRATOCHAT_SSM_PATH`` is set (``<path>/<VARIABLE_NAME>``, SecureStrings decrypted).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError


def _env(name: str) -> AliasChoices:
    """A field read from a variable of the original project, without the STRATOCHAT_ prefix."""
    return AliasChoices(name)


SECRET_KEY_MIN = 32
# Words that mark a value copied from an example rather than generated.
_PLACEHOLDERS = ("changethis", "changeme", "change-me", "change_me", "placeholder", "your-secret", "example")


def _strong_secret(value: str | None) -> bool:
    if not value or len(value) < SECRET_KEY_MIN:
        return False
    lowered = value.lower()
    return not any(p in lowered for p in _PLACEHOLDERS)


def _require(value: str | None, name: str) -> str:
    if not value:
        raise ValueError(f"{name} is required to sign in through the identity provider")
    return value


@dataclass(frozen=True, slots=True)
class IdentityConfig:
    """The identity provider, resolved from the ``COGNITO_*`` or ``OIDC_*`` variables."""

    kind: Literal["cognito", "oidc"]
    name: str  # shown on the sign-in button
    issuer: str
    client_id: str
    client_secret: str | None  # None: a public client (PKCE only)
    scopes: tuple[str, ...]
    discovery_url: str
    # Cognito's hosted UI has no end_session_endpoint in discovery: https://<COGNITO_DOMAIN>/logout.
    cognito_logout_url: str | None = None


class SsmParameterSource(PydanticBaseSettingsSource):
    """Every setting from SSM Parameter Store, named ``<STRATOCHAT_SSM_PATH>/<VARIABLE_NAME>`` (such as
    ``/stratochat/prod/SECRET_KEY`` or ``/stratochat/prod/STRATOCHAT_SESSION_TTL``), SecureStrings decrypted.

    The path itself (and the region) come from the sources above this one. pydantic-settings'
    ``AWSSystemsManagerSettingsSource`` does the reading (paginated ``get_parameters_by_path``, recursive,
    with decryption, prefix stripped); boto3 is synchronous, which is fine: this runs once, at start-up,
    before the event loop. Its endpoint follows the SDK's own variables (``AWS_ENDPOINT_URL_SSM``)."""

    def __init__(self, settings_cls: type[BaseSettings], *above: PydanticBaseSettingsSource) -> None:
        super().__init__(settings_cls)
        self._above = above

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, "", False  # unused: __call__ returns everything at once

    def _from_above(self, *keys: str) -> str | None:
        for source in self._above:
            values = source()
            for key in keys:
                value = values.get(key)
                if isinstance(value, str) and value.strip():
                    return value.strip()
        return None

    def __call__(self) -> dict[str, Any]:
        path = self._from_above("ssm_path", "STRATOCHAT_SSM_PATH")
        if path is None:
            return {}
        if not path.startswith("/"):
            raise SettingsError(f"STRATOCHAT_SSM_PATH must be an absolute path such as /stratochat/prod, not {path!r}")
        try:
            from pydantic_settings import AWSSystemsManagerSettingsSource

            source = AWSSystemsManagerSettingsSource(
                self.settings_cls,
                ssm_path=path.rstrip("/") or "/",
                region_name=self._from_above("AWS_DEFAULT_REGION", "aws_default_region"),
                case_sensitive=False,
                env_nested_delimiter=None,
            )
            return source()
        except ImportError as exc:
            raise SettingsError("STRATOCHAT_SSM_PATH needs boto3: install stratochat[aws]") from exc
        except Exception as exc:  # botocore's errors: no credentials, access denied, unreachable endpoint
            raise SettingsError(f"could not read SSM parameters under STRATOCHAT_SSM_PATH={path}: {exc}") from exc


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="STRATOCHAT_",
        env_file=".env",
        extra="ignore",
        validate_by_name=True,
        validate_by_alias=True,
        # Errors name the variable but never echo values: start-up errors land in logs, secrets among them.
        hide_input_in_errors=True,
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
    # Sign-ups from one address: a token bucket of this many per minute, saved up to the burst (0: off).
    signup_rate: float = Field(30, ge=0)
    signup_burst: int = Field(100, ge=1)
    login_failure_window: float = Field(300, gt=0)
    secret_key: str | None = Field(None, validation_alias=_env("SECRET_KEY"))

    # chats and messages
    max_message_chars: int = Field(4000, ge=1, le=100_000)
    max_group_members: int = Field(100, ge=2, le=10_000)
    ws_max_frame_bytes: int | None = Field(None, ge=1024)
    ws_send_queue: int = Field(2048, ge=16)
    # seconds a node's presence entries live without its heartbeat (every third of it): with Redis, the
    # users of a node that died go offline after this long
    presence_ttl: float = Field(30, ge=1)
    # seconds between SIGTERM and closing the sockets (1012), for in-flight sends to be acknowledged
    drain_seconds: float = Field(1.0, ge=0, le=15)

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
    # files: comma-separated media types accepted for upload (unset: images, PDF, text, office, archives)
    file_content_types: str | None = None
    # seconds an uploaded file may wait for its message after its upload URL expired; then it is purged
    file_pending_ttl: float = Field(3600, gt=0)
    file_purge_interval: float = Field(60, gt=0)

    # cloud backends (unset: embedded defaults)
    aws_default_region: str | None = Field(None, validation_alias=_env("AWS_DEFAULT_REGION"))
    redis_cluster_endpoint: str | None = Field(None, validation_alias=_env("REDIS_CLUSTER_ENDPOINT"))
    # ElastiCache's AUTH token, kept apart from the endpoint (see _redis_auth_token).
    redis_auth_token: str | None = Field(None, validation_alias=_env("REDIS_AUTH_TOKEN"), repr=False)
    s3_bucket_name: str | None = Field(None, validation_alias=_env("S3_BUCKET_NAME"))
    cognito_user_pool_id: str | None = Field(None, validation_alias=_env("COGNITO_USER_POOL_ID"))
    cognito_app_client_id: str | None = Field(None, validation_alias=_env("COGNITO_APP_CLIENT_ID"))
    cognito_app_client_secret: str | None = Field(None, validation_alias=_env("COGNITO_APP_CLIENT_SECRET"))
    cognito_domain: str | None = Field(None, validation_alias=_env("COGNITO_DOMAIN"))
    oidc_issuer_url: str | None = Field(None, validation_alias=_env("OIDC_ISSUER_URL"))
    oidc_client_id: str | None = Field(None, validation_alias=_env("OIDC_CLIENT_ID"))
    oidc_client_secret: str | None = Field(None, validation_alias=_env("OIDC_CLIENT_SECRET"))
    ssm_path: str | None = None

    # identity provider login (see identity_provider())
    oidc_name: str = Field("Single sign-on", min_length=1, max_length=64)
    oidc_scopes: str = "openid email profile"
    # Members of this IdP group (claim cognito:groups, else groups) become premium; blank turns it off.
    premium_group: str | None = "premium"
    # The SDK's own endpoint variables: a local Cognito stand-in (moto) serves discovery and JWKS there.
    aws_endpoint_url_cognito_idp: str | None = Field(
        None, validation_alias=AliasChoices("AWS_ENDPOINT_URL_COGNITO_IDP", "AWS_ENDPOINT_URL")
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Tuple order is precedence: environment variables override SSM parameters.
        ssm = SsmParameterSource(settings_cls, init_settings, env_settings, dotenv_settings)
        return init_settings, env_settings, dotenv_settings, ssm, file_secret_settings

    @field_validator(
        "public_url",
        "secret_key",
        "redis_cluster_endpoint",
        "redis_auth_token",
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
        "aws_endpoint_url_cognito_idp",
        "premium_group",
        "node_id",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("file_content_types")
    @classmethod
    def _media_types(cls, value: str | None) -> str | None:
        from .core.files import parse_content_types

        parse_content_types(value)  # a typo fails at start-up, with the variable's name
        return value

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

    @model_validator(mode="after")
    def _redis_auth_token(self) -> Settings:
        # On ECS the endpoint is a plain variable from the stack and the token a Secret from SSM, so the two
        # meet here; a password already in the URL wins. redis-py unquotes it.
        if self.redis_auth_token and self.redis_cluster_endpoint:
            parts = urlsplit(self.redis_cluster_endpoint)
            if parts.password is None and parts.hostname:
                user, _, host = parts.netloc.rpartition("@")
                netloc = f"{user}:{quote(self.redis_auth_token, safe='')}@{host}"
                self.redis_cluster_endpoint = urlunsplit(parts._replace(netloc=netloc))
        return self

    @model_validator(mode="after")
    def _check_cloud_config(self) -> Settings:
        self.identity_provider()  # raises on an incomplete COGNITO_* / OIDC_* set
        cloud = [
            name
            for name, configured in (
                ("REDIS_CLUSTER_ENDPOINT", self.redis_cluster_endpoint),
                ("S3_BUCKET_NAME", self.s3_bucket_name),
                ("COGNITO_USER_POOL_ID", self.cognito_user_pool_id),
                ("OIDC_ISSUER_URL", self.oidc_issuer_url),
                ("STRATOCHAT_STORE=dynamodb", self.store == "dynamodb"),
            )
            if configured
        ]
        # As the full-stack template's _enforce_non_default_secrets: the key generated into the data
        # directory is per machine, so nodes sharing a cloud backend would not accept each other's
        # signed URLs and login state; a placeholder would let anyone forge them.
        if cloud and not _strong_secret(self.secret_key):
            raise ValueError(
                f"SECRET_KEY must be set to a random value of at least {SECRET_KEY_MIN} characters (not a "
                f"placeholder) once a cloud backend is configured ({', '.join(cloud)}); generate one with "
                "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
            )
        return self

    def identity_provider(self) -> IdentityConfig | None:
        """The OpenID Connect provider to sign in with, or None. Cognito is one: the ``COGNITO_*``
        variables fill in what ``OIDC_*`` leaves unset. Raises ``ValueError`` naming a missing variable."""
        cognito = any(
            (self.cognito_user_pool_id, self.cognito_app_client_id, self.cognito_app_client_secret, self.cognito_domain)
        )
        if not cognito and not (self.oidc_issuer_url or self.oidc_client_id or self.oidc_client_secret):
            return None
        discovery_url = logout_url = None
        if cognito:
            pool = _require(self.cognito_user_pool_id, "COGNITO_USER_POOL_ID")
            domain = _require(self.cognito_domain, "COGNITO_DOMAIN")
            # A pool id is "<region>_<id>", so the region is known even without AWS_DEFAULT_REGION.
            region = self.aws_default_region or pool.partition("_")[0]
            if not pool.partition("_")[2] or not region:
                raise ValueError("COGNITO_USER_POOL_ID must look like <region>_<id>, e.g. eu-west-1_AbC123")
            issuer = self.oidc_issuer_url or f"https://cognito-idp.{region}.amazonaws.com/{pool}"
            client_id = self.oidc_client_id or _require(self.cognito_app_client_id, "COGNITO_APP_CLIENT_ID")
            client_secret = self.oidc_client_secret or self.cognito_app_client_secret
            origin = domain.rstrip("/") if "://" in domain else f"https://{domain.strip('/')}"
            logout_url = f"{origin}/logout"
            if self.aws_endpoint_url_cognito_idp and not self.oidc_issuer_url:
                discovery_url = (
                    f"{self.aws_endpoint_url_cognito_idp.rstrip('/')}/{pool}/.well-known/openid-configuration"
                )
            name = "Cognito"
        else:
            issuer = _require(self.oidc_issuer_url, "OIDC_ISSUER_URL")
            client_id = _require(self.oidc_client_id, "OIDC_CLIENT_ID")
            client_secret = self.oidc_client_secret
            name = self.oidc_name
        if urlsplit(issuer).scheme not in ("http", "https") or not urlsplit(issuer).netloc:
            raise ValueError("OIDC_ISSUER_URL must be an http(s) URL such as https://idp.example.com")
        return IdentityConfig(
            kind="cognito" if cognito else "oidc",
            name=name,
            issuer=issuer.rstrip("/"),
            client_id=client_id,
            client_secret=client_secret,
            scopes=tuple(self.oidc_scopes.split()) or ("openid",),
            discovery_url=discovery_url or f"{issuer.rstrip('/')}/.well-known/openid-configuration",
            cognito_logout_url=logout_url,
        )

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
