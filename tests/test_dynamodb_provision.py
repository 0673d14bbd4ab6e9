"""`stratochat aws provision` against moto over real HTTP: creates, is idempotent, plans with --dry-run."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import boto3
import pytest
from botocore.config import Config

from stratochat.adapters.aws_provision import CORS_RULE_ID
from stratochat.adapters.store.dynamodb import table_definitions
from stratochat.adapters.store.dynamodb.schema import TTL_TABLES, USERS
from stratochat.cli import main
from tests.services.server import ROOT


@pytest.fixture
def aws_env(moto_serial_endpoint: str, unique_prefix: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {
        "AWS_ENDPOINT_URL": moto_serial_endpoint,
        "STRATOCHAT_TABLE_PREFIX": unique_prefix,
        "S3_BUCKET_NAME": f"{unique_prefix}files",
        "STRATOCHAT_PUBLIC_URL": "https://chat.example.com",
        "STRATOCHAT_ALLOWED_ORIGINS": "http://localhost:5173",
        "STRATOCHAT_STORE": "dynamodb",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("SECRET_KEY", raising=False)  # provisioning must not need it
    return env


def client(service: str, endpoint: str) -> Any:
    config = Config(s3={"addressing_style": "path"}) if service == "s3" else None
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1", config=config)


def prefixed_tables(db: Any, prefix: str) -> set[str]:
    pages = db.get_paginator("list_tables").paginate()  # moto holds every other test's tables too
    return {t for page in pages for t in page["TableNames"] if t.startswith(prefix)}


def test_dry_run_plans_everything_and_changes_nothing(
    aws_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """--dry-run prints every table, index, TTL and the bucket with its CORS rule, and creates none of them."""
    prefix, bucket = aws_env["STRATOCHAT_TABLE_PREFIX"], aws_env["S3_BUCKET_NAME"]
    assert main(["aws", "provision", "--dry-run"]) == 0
    out = capsys.readouterr().out
    for definition in table_definitions(prefix):
        assert f"would create table {definition['TableName']} (" in out
    for name in TTL_TABLES:
        assert f"would enable TTL on table {prefix}{name} (attribute ttl)" in out
    assert f"would create bucket {bucket}" in out
    assert "GET, POST from http://localhost:5173, https://chat.example.com" in out
    assert "dry run: nothing changed" in out
    assert prefixed_tables(client("dynamodb", aws_env["AWS_ENDPOINT_URL"]), prefix) == set()
    s3 = client("s3", aws_env["AWS_ENDPOINT_URL"])
    assert bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}


def test_provision_creates_everything_and_is_idempotent(
    aws_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """provision creates the tables (keys, indexes, TTL) and the bucket with CORS; a rerun changes nothing."""
    prefix, bucket, endpoint = (
        aws_env["STRATOCHAT_TABLE_PREFIX"],
        aws_env["S3_BUCKET_NAME"],
        aws_env["AWS_ENDPOINT_URL"],
    )
    assert main(["aws", "provision"]) == 0
    assert "made" in capsys.readouterr().out
    db = client("dynamodb", endpoint)
    definitions = table_definitions(prefix)
    assert prefixed_tables(db, prefix) == {d["TableName"] for d in definitions}
    for d in definitions:
        table = db.describe_table(TableName=d["TableName"])["Table"]
        assert table["KeySchema"] == d["KeySchema"]
        assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        want = {g["IndexName"]: g["KeySchema"] for g in d.get("GlobalSecondaryIndexes", [])}
        assert {g["IndexName"]: g["KeySchema"] for g in table.get("GlobalSecondaryIndexes", [])} == want
    for d in definitions:
        ttl = db.describe_time_to_live(TableName=d["TableName"])["TimeToLiveDescription"]
        if any(d["TableName"] == prefix + name for name in TTL_TABLES):
            assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "ttl"}
        else:
            assert ttl["TimeToLiveStatus"] == "DISABLED"
    s3 = client("s3", endpoint)
    (rule,) = s3.get_bucket_cors(Bucket=bucket)["CORSRules"]
    assert rule["ID"] == CORS_RULE_ID
    assert sorted(rule["AllowedOrigins"]) == ["http://localhost:5173", "https://chat.example.com"]
    assert sorted(rule["AllowedMethods"]) == ["GET", "POST"] and rule["ExposeHeaders"] == ["ETag"]
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values())

    # A second run, through the real entry point, finds everything in place and exits 0.
    rerun = subprocess.run(
        [sys.executable, "-m", "stratochat", "aws", "provision"],
        env={**os.environ},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert "nothing to do" in rerun.stdout
    assert main(["aws", "provision", "--dry-run"]) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_provision_completes_older_tables_and_updates_cors(
    aws_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """An existing table missing its index and TTL gets them; a changed origin list rewrites only its CORS rule."""
    prefix, bucket, endpoint = (
        aws_env["STRATOCHAT_TABLE_PREFIX"],
        aws_env["S3_BUCKET_NAME"],
        aws_env["AWS_ENDPOINT_URL"],
    )
    db, s3 = client("dynamodb", endpoint), client("s3", endpoint)
    users = next(d for d in table_definitions(prefix) if d["TableName"] == prefix + USERS)
    db.create_table(
        TableName=users["TableName"],
        KeySchema=users["KeySchema"],
        AttributeDefinitions=users["AttributeDefinitions"][:1],
        BillingMode="PAY_PER_REQUEST",
    )
    s3.create_bucket(Bucket=bucket)
    foreign = {"ID": "operator-rule", "AllowedOrigins": ["https://admin.example.com"], "AllowedMethods": ["PUT"]}
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [foreign]})

    assert main(["aws", "provision", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"would add index by_username to table {prefix}{USERS}" in out
    assert f"would create table {prefix}{USERS}" not in out and f"would create bucket {bucket}" not in out
    assert main(["aws", "provision"]) == 0
    indexes = db.describe_table(TableName=prefix + USERS)["Table"]["GlobalSecondaryIndexes"]
    assert [g["IndexName"] for g in indexes] == ["by_username"]
    rules = {r["ID"]: r for r in s3.get_bucket_cors(Bucket=bucket)["CORSRules"]}
    assert set(rules) == {"operator-rule", CORS_RULE_ID}

    os.environ["STRATOCHAT_ALLOWED_ORIGINS"] = "https://beta.example.com"  # monkeypatch restores it
    capsys.readouterr()
    assert main(["aws", "provision"]) == 0
    assert f"set CORS rule {CORS_RULE_ID}" in capsys.readouterr().out
    rules = {r["ID"]: r for r in s3.get_bucket_cors(Bucket=bucket)["CORSRules"]}
    assert sorted(rules[CORS_RULE_ID]["AllowedOrigins"]) == ["https://beta.example.com", "https://chat.example.com"]
    assert rules["operator-rule"]["AllowedOrigins"] == ["https://admin.example.com"]


def test_provision_refuses_a_table_with_other_keys(aws_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    """A table that exists with another key schema is reported (exit 1), not dropped or altered."""
    prefix = aws_env["STRATOCHAT_TABLE_PREFIX"]
    db = client("dynamodb", aws_env["AWS_ENDPOINT_URL"])
    db.create_table(
        TableName=f"{prefix}ChatMessages",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    assert main(["aws", "provision"]) == 1
    assert f"table {prefix}ChatMessages exists with key schema" in capsys.readouterr().err
    assert db.describe_table(TableName=f"{prefix}ChatMessages")["Table"]["KeySchema"][0]["AttributeName"] == "id"
