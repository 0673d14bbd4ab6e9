"""``stratochat aws provision [--dry-run]``: create what the AWS backends need, idempotently.

The DynamoDB tables of ``dynamodb.schema`` (with their indexes and TTL) and, when ``S3_BUCKET_NAME`` is
set, the bucket with public access blocked and a CORS rule letting the app's origins POST presigned uploads
and GET downloads (exposing ETag). It first reads what exists, then creates only what is missing: run twice,
the second run changes nothing and exits 0. ``--dry-run`` prints the plan and changes nothing.
It never deletes or rewrites a resource it did not create, except its own CORS rule (by its ID).
The SDK resolves region, credentials and endpoints (``AWS_ENDPOINT_URL``...) as it defines them.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

import aioboto3  # type: ignore[import-untyped]
from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from ..settings import Settings
from .store.dynamodb.schema import TTL_ATTRIBUTE, table_definitions, ttl_specifications

CORS_RULE_ID = "stratochat-browser-files"
# How long to wait for a table or index to become ACTIVE (real DynamoDB takes seconds to minutes).
ACTIVE_TIMEOUT_S = 900.0


class ProvisionError(Exception):
    """Something exists in a shape provision cannot fix without destroying data."""


@dataclass
class Plan:
    changes: list[tuple[str, Callable[[], Awaitable[None]]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, what: str, apply: Callable[[], Awaitable[None]]) -> None:
        self.changes.append((what, apply))


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def bucket_origins(settings: Settings) -> tuple[list[str], bool]:
    """The origins the bucket's CORS rule allows, and whether they are the local-development default."""
    origins = list(dict.fromkeys(settings.extra_origins))
    if origins:
        return origins, False
    return [f"http://127.0.0.1:{settings.port}", f"http://localhost:{settings.port}"], True


def cors_rule(origins: list[str]) -> dict[str, Any]:
    return {
        "ID": CORS_RULE_ID,
        "AllowedOrigins": sorted(origins),
        "AllowedMethods": ["GET", "POST"],
        "AllowedHeaders": ["*"],
        "ExposeHeaders": ["ETag"],
        "MaxAgeSeconds": 3000,
    }


def _same_rule(a: dict[str, Any], b: dict[str, Any]) -> bool:
    keys = ("AllowedOrigins", "AllowedMethods", "AllowedHeaders", "ExposeHeaders")
    return all(sorted(a.get(k) or []) == sorted(b.get(k) or []) for k in keys) and int(
        a.get("MaxAgeSeconds") or 0
    ) == int(b.get("MaxAgeSeconds") or 0)


# DynamoDB -----------------------------------------------------------------------------------------------
async def _wait_active(db: Any, table: str) -> None:
    """Until the table and every index of it are ACTIVE (bounded)."""
    deadline = time.monotonic() + ACTIVE_TIMEOUT_S
    delay = 0.1
    while True:
        desc = (await db.describe_table(TableName=table))["Table"]
        statuses = [desc.get("TableStatus")] + [g.get("IndexStatus") for g in desc.get("GlobalSecondaryIndexes", [])]
        if all(s == "ACTIVE" for s in statuses):
            return
        if time.monotonic() > deadline:
            raise ProvisionError(f"table {table} did not become ACTIVE within {ACTIVE_TIMEOUT_S:.0f} s")
        await asyncio.sleep(delay)
        delay = min(5.0, delay * 2)


def _describe_keys(definition: dict[str, Any]) -> str:
    keys = ", ".join(f"{k['AttributeName']} {k['KeyType']}" for k in definition["KeySchema"])
    indexes = [g["IndexName"] for g in definition.get("GlobalSecondaryIndexes", [])]
    return f"({keys}{'; index ' + ', '.join(indexes) if indexes else ''})"


async def plan_tables(db: Any, prefix: str, plan: Plan) -> None:
    ttl = {spec["TableName"]: spec for spec in ttl_specifications(prefix)}
    for definition in table_definitions(prefix):
        name = definition["TableName"]
        try:
            existing = (await db.describe_table(TableName=name))["Table"]
        except ClientError as exc:
            if _code(exc) != "ResourceNotFoundException":
                raise
            existing = None
        if existing is None:

            async def create(d: dict[str, Any] = definition) -> None:
                await db.create_table(**d)
                await _wait_active(db, d["TableName"])

            plan.add(f"create table {name} {_describe_keys(definition)}", create)
        else:
            want = sorted((k["AttributeName"], k["KeyType"]) for k in definition["KeySchema"])
            have = sorted((k["AttributeName"], k["KeyType"]) for k in existing.get("KeySchema", []))
            if want != have:
                raise ProvisionError(f"table {name} exists with key schema {have}, expected {want}")
            present = {g["IndexName"] for g in existing.get("GlobalSecondaryIndexes", [])}
            for gsi in definition.get("GlobalSecondaryIndexes", []):
                if gsi["IndexName"] in present:
                    continue

                async def add_index(d: dict[str, Any] = definition, g: dict[str, Any] = gsi) -> None:
                    await _wait_active(db, d["TableName"])  # one index change at a time per table
                    await db.update_table(
                        TableName=d["TableName"],
                        AttributeDefinitions=d["AttributeDefinitions"],
                        GlobalSecondaryIndexUpdates=[{"Create": g}],
                    )
                    await _wait_active(db, d["TableName"])

                plan.add(f"add index {gsi['IndexName']} to table {name}", add_index)
        if name in ttl:
            status = "DISABLED"
            if existing is not None:
                desc = (await db.describe_time_to_live(TableName=name)).get("TimeToLiveDescription", {})
                status = desc.get("TimeToLiveStatus", "DISABLED")
                if status in ("ENABLED", "ENABLING") and desc.get("AttributeName") != TTL_ATTRIBUTE:
                    raise ProvisionError(
                        f"table {name} has TTL on attribute {desc.get('AttributeName')!r}, expected {TTL_ATTRIBUTE!r}"
                    )
            if status not in ("ENABLED", "ENABLING"):

                async def enable_ttl(spec: dict[str, Any] = ttl[name]) -> None:
                    await db.update_time_to_live(**spec)

                plan.add(f"enable TTL on table {name} (attribute {TTL_ATTRIBUTE})", enable_ttl)


# S3 -----------------------------------------------------------------------------------------------------
async def plan_bucket(s3: Any, bucket: str, origins: list[str], plan: Plan) -> None:
    exists = True
    try:
        await s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if _code(exc) not in ("404", "NoSuchBucket", "NotFound"):
            if _code(exc) in ("403", "AccessDenied"):
                raise ProvisionError(f"bucket {bucket} exists but this account cannot use it") from exc
            raise
        exists = False
    if not exists:
        region = s3.meta.region_name

        async def create() -> None:
            params: dict[str, Any] = {"Bucket": bucket}
            if region and region != "us-east-1":
                params["CreateBucketConfiguration"] = {"LocationConstraint": region}
            await s3.create_bucket(**params)

        plan.add(f"create bucket {bucket}", create)

    blocked = False
    if exists:
        try:
            conf = (await s3.get_public_access_block(Bucket=bucket))["PublicAccessBlockConfiguration"]
            blocked = all(conf.get(k) for k in PUBLIC_ACCESS_BLOCK)
        except ClientError as exc:
            if _code(exc) != "NoSuchPublicAccessBlockConfiguration":
                raise
    if not blocked:

        async def block() -> None:
            await s3.put_public_access_block(
                Bucket=bucket, PublicAccessBlockConfiguration=dict.fromkeys(PUBLIC_ACCESS_BLOCK, True)
            )

        plan.add(f"block public access to bucket {bucket}", block)

    rules: list[dict[str, Any]] = []
    if exists:
        try:
            rules = list((await s3.get_bucket_cors(Bucket=bucket)).get("CORSRules", []))
        except ClientError as exc:
            if _code(exc) != "NoSuchCORSConfiguration":
                raise
    want = cors_rule(origins)
    ours = [r for r in rules if r.get("ID") == CORS_RULE_ID]
    if len(ours) != 1 or not _same_rule(ours[0], want):
        others = [r for r in rules if r.get("ID") != CORS_RULE_ID]

        async def put_cors() -> None:
            await s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [*others, want]})

        plan.add(
            f"set CORS rule {CORS_RULE_ID} on bucket {bucket}: GET, POST from {', '.join(want['AllowedOrigins'])}",
            put_cors,
        )


PUBLIC_ACCESS_BLOCK = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")


# the command --------------------------------------------------------------------------------------------
async def provision(settings: Settings, *, dry_run: bool = False, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = sys.stderr
    session = aioboto3.Session()
    region = settings.aws_default_region
    plan = Plan()
    try:
        async with session.client("dynamodb", region_name=region) as db:
            await plan_tables(db, settings.table_prefix, plan)
            if settings.s3_bucket_name:
                origins, default = bucket_origins(settings)
                if default:
                    plan.notes.append(
                        "no STRATOCHAT_PUBLIC_URL or STRATOCHAT_ALLOWED_ORIGINS set: the CORS rule allows "
                        "the local server's origins only"
                    )
                async with session.client("s3", region_name=region) as s3:
                    await plan_bucket(s3, settings.s3_bucket_name, origins, plan)
                    await _run(plan, dry_run, out)
            else:
                await _run(plan, dry_run, out)
    except ProvisionError as exc:
        print(f"stratochat: {exc}", file=err)
        return 1
    except ClientError as exc:
        print(f"stratochat: AWS refused: {_code(exc)}: {exc.response.get('Error', {}).get('Message')}", file=err)
        return 1
    except BotoCoreError as exc:
        print(f"stratochat: cannot reach AWS: {exc}", file=err)
        return 1
    for note in plan.notes:
        print(f"note: {note}", file=err)
    return 0


async def _run(plan: Plan, dry_run: bool, out: TextIO) -> None:
    if not plan.changes:
        print("everything exists; nothing to do", file=out)
        return
    for what, apply in plan.changes:
        if dry_run:
            print(f"would {what}", file=out)
        else:
            print(f"{what} ...", file=out, flush=True)
            await apply()
    verb = "would make" if dry_run else "made"
    print(f"{verb} {len(plan.changes)} change(s){' (dry run: nothing changed)' if dry_run else ''}", file=out)


async def provision_tables(prefix: str, region: str | None = None) -> None:
    """Create every missing table of ``prefix`` (tests and tools)."""
    plan = Plan()
    async with aioboto3.Session().client("dynamodb", region_name=region) as db:
        await plan_tables(db, prefix, plan)
        for _, apply in plan.changes:
            await apply()
