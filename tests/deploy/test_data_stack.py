"""The data stack created by CloudFormation (moto in server mode), then used by a real server configured
by nothing but the stack's SSM path.

moto implements no Cognito resources in CloudFormation (a Ref to one resolves to "" and an output GetAtt
answers HTTP 500), so the stack is created with EnableCognito=false; test_templates.py checks the Cognito
part. moto also skips bucket CORS/policy and table TTL/PITR silently: those are checked on the template.
"""

from __future__ import annotations

import ast
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from stratochat.adapters.store.dynamodb import schema
from stratochat.settings import Settings
from tests.client import Api
from tests.deploy.cfn import TEMPLATES
from tests.services.server import ThreadServer

SECRET = "deploy-test-secret-0123456789-abcdefghijklmnopqrstuvwxyz"


def _client(service: str, endpoint: str) -> Any:
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1")


@pytest.fixture
def data_stack(moto_endpoint: str, unique_prefix: str) -> Iterator[dict[str, str]]:
    """A data stack of its own (prefix, path, repository, stack name all unique); its outputs."""
    cf = _client("cloudformation", moto_endpoint)
    name = f"{unique_prefix}data"
    params = {
        "PublicUrl": "https://chat.example.com",
        "TablePrefix": unique_prefix,
        "SsmPath": f"/{unique_prefix}app",
        "EnableCognito": "false",
        "CognitoDomainPrefix": "unused",
        "RepositoryName": f"{unique_prefix}repo",
    }
    cf.create_stack(
        StackName=name,
        TemplateBody=TEMPLATES["data"].read_text(),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
        Capabilities=["CAPABILITY_IAM"],
    )
    deadline = time.monotonic() + 60
    while (stack := cf.describe_stacks(StackName=name)["Stacks"][0])["StackStatus"].endswith("IN_PROGRESS"):
        assert time.monotonic() < deadline, "stack creation did not finish"
        time.sleep(0.2)
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    yield {**params, **outputs, "StackName": name}


def test_data_stack_creates_the_tables_the_store_uses(data_stack: dict[str, str], moto_endpoint: str) -> None:
    """Every table of schema.table_definitions() exists with its keys, attribute types, indexes, on-demand."""
    ddb = _client("dynamodb", moto_endpoint)
    prefix = data_stack["TablePrefix"]
    for want in schema.table_definitions(prefix):
        got = ddb.describe_table(TableName=want["TableName"])["Table"]
        assert got["KeySchema"] == want["KeySchema"]
        assert sorted(got["AttributeDefinitions"], key=str) == sorted(want["AttributeDefinitions"], key=str)
        assert got["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        indexes = {i["IndexName"]: i for i in got.get("GlobalSecondaryIndexes", [])}
        assert set(indexes) == {i["IndexName"] for i in want.get("GlobalSecondaryIndexes", [])}
        for index in want.get("GlobalSecondaryIndexes", []):
            assert indexes[index["IndexName"]]["KeySchema"] == index["KeySchema"]
            assert indexes[index["IndexName"]]["Projection"]["ProjectionType"] == index["Projection"]["ProjectionType"]


def test_data_stack_creates_bucket_parameters_repository_and_scoped_roles(
    data_stack: dict[str, str], moto_endpoint: str
) -> None:
    """The bucket, the settings under the path, the repository and log group exist, and the task role names
    exactly the stack's table ARNs."""
    bucket = data_stack["BucketName"]
    _client("s3", moto_endpoint).head_bucket(Bucket=bucket)
    path = data_stack["SsmPath"]
    found = _client("ssm", moto_endpoint).get_parameters_by_path(Path=path, Recursive=True)["Parameters"]
    values = {p["Name"].removeprefix(path + "/"): p["Value"] for p in found}
    assert values == {
        "STRATOCHAT_STORE": "dynamodb",
        "STRATOCHAT_TABLE_PREFIX": data_stack["TablePrefix"],
        "S3_BUCKET_NAME": bucket,
        "STRATOCHAT_PUBLIC_URL": "https://chat.example.com",
    }
    repo = _client("ecr", moto_endpoint).describe_repositories(repositoryNames=[data_stack["RepositoryName"]])
    assert repo["repositories"][0]["repositoryUri"] == data_stack["RepositoryUri"]
    groups = _client("logs", moto_endpoint).describe_log_groups(logGroupNamePrefix=data_stack["LogGroupName"])
    assert groups["logGroups"][0]["retentionInDays"] == 365

    iam = _client("iam", moto_endpoint)
    role = data_stack["TaskRoleArn"].rsplit("/", 1)[1]
    document = iam.get_role_policy(RoleName=role, PolicyName="application")["PolicyDocument"]
    if isinstance(document, str):  # moto 5.2.5 hands back the Python repr of what CloudFormation resolved
        document = ast.literal_eval(document)
    statements = {s["Sid"]: s for s in document["Statement"] if isinstance(s, dict)}
    ddb = _client("dynamodb", moto_endpoint)
    arns = {
        ddb.describe_table(TableName=t["TableName"])["Table"]["TableArn"]
        for t in schema.table_definitions(data_stack["TablePrefix"])
    }
    granted = set(statements["Tables"]["Resource"])
    assert {r for r in granted if "/index/" not in r} == arns
    assert statements["Uploads"]["Resource"] == f"arn:aws:s3:::{bucket}/uploads/*"
    execution = data_stack["ExecutionRoleArn"].rsplit("/", 1)[1]
    assert execution != role


@pytest.fixture
def server_from_path(
    data_stack: dict[str, str], moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[], ThreadServer]]:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    servers: list[ThreadServer] = []

    def start() -> ThreadServer:
        # Only the path and the secret: store, table prefix, bucket and public URL come from SSM.
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None, ssm_path=data_stack["SsmPath"], secret_key=SECRET, data_dir=tmp_path, burst_rate=0
        )
        assert settings.store == "dynamodb" and settings.s3_bucket_name == data_stack["BucketName"]
        servers.append(ThreadServer(settings).start())
        return servers[-1]

    yield start
    for s in servers:
        s.stop()


async def test_a_server_configured_by_the_stacks_path_stores_messages_in_its_tables(
    server_from_path: Callable[[], ThreadServer], data_stack: dict[str, str], moto_endpoint: str
) -> None:
    """A node reading only STRATOCHAT_SSM_PATH serves: a message sent lands in the stack's ChatMessages table."""
    server = server_from_path()
    async with Api(server.url) as alice, Api(server.url) as bob:
        ready = await alice.get("/readyz")
        assert ready.status_code == 200, ready.text
        await alice.signup()
        await bob.signup()
        chat = await alice.chat_with(bob.username)
        sent = await alice.post(f"/api/chats/{chat['chat_id']}/messages", json={"content": "via CloudFormation"})
        assert sent.status_code == 201, sent.text
        history = await bob.history(chat["chat_id"])
        assert [m["content"] for m in history["messages"]] == ["via CloudFormation"]
    rows = _client("dynamodb", moto_endpoint).query(
        TableName=data_stack["TablePrefix"] + schema.MESSAGES,
        KeyConditionExpression="chat_id = :c",
        ExpressionAttributeValues={":c": {"S": chat["chat_id"]}},
    )["Items"]
    assert len(rows) == 1 and "via CloudFormation" in str(rows[0])
