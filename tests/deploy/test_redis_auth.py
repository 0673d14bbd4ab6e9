"""REDIS_AUTH_TOKEN: on ECS the ElastiCache token is a Secret from SSM while the endpoint is a plain variable
from the stack; the settings join them into the URL redis-py connects with."""

from __future__ import annotations

from typing import Any

from redis.asyncio.connection import parse_url

from stratochat.settings import Settings

SECRET = "redis-auth-test-secret-0123456789-abcdefghijklmnop"


def make(**kw: Any) -> Settings:
    return Settings(_env_file=None, secret_key=SECRET, **kw)  # type: ignore[call-arg]


def test_token_joins_an_endpoint_without_password() -> None:
    """The token becomes the URL's password, quoted, and redis-py reads it back unchanged."""
    s = make(redis_cluster_endpoint="rediss://clustercfg.x.use1.cache.amazonaws.com:6379", redis_auth_token="a/b@c:d%")
    parsed = parse_url(s.redis_cluster_endpoint or "")
    assert parsed["password"] == "a/b@c:d%"
    assert parsed["host"] == "clustercfg.x.use1.cache.amazonaws.com" and parsed["port"] == 6379


def test_a_password_in_the_url_wins_and_a_user_is_kept() -> None:
    """An endpoint that already carries a password is left alone; a user name stays beside the token."""
    assert make(redis_cluster_endpoint="rediss://:mine@h:6379", redis_auth_token="t").redis_cluster_endpoint == (
        "rediss://:mine@h:6379"
    )
    assert make(redis_cluster_endpoint="rediss://app@h:6379", redis_auth_token="t").redis_cluster_endpoint == (
        "rediss://app:t@h:6379"
    )


def test_token_comes_from_the_environment_and_stays_out_of_repr(monkeypatch: Any) -> None:
    """REDIS_AUTH_TOKEN is read from the environment; the settings' repr does not show it as a field."""
    monkeypatch.setenv("REDIS_CLUSTER_ENDPOINT", "redis://127.0.0.1:6390")
    monkeypatch.setenv("REDIS_AUTH_TOKEN", "from-env")
    s = make()
    assert s.redis_cluster_endpoint == "redis://:from-env@127.0.0.1:6390"
    assert "redis_auth_token" not in repr(s)


def test_no_endpoint_no_change() -> None:
    """A token without an endpoint configures nothing."""
    assert make(redis_auth_token="t").redis_cluster_endpoint is None
