"""The deploy artifacts, checked offline: linters and scanners on every file, then assertions on the parsed
templates (least privilege, the load balancer and task settings the server needs, one table schema)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from stratochat.adapters.aws_provision import cors_rule
from stratochat.adapters.store.dynamodb import schema
from tests.deploy import tables
from tests.deploy.cfn import DEPLOY, ROOT, TEMPLATES, Resolver, as_list, load, parliament, policies, resources

BIN = Path(sys.executable).parent
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
DYNAMO_ADAPTER = ROOT / "stratochat" / "adapters" / "store" / "dynamodb"


def need(path: Path | str | None, what: str) -> str:
    """The tool's path; a missing tool skips on a developer machine and fails in CI (scripts/test installs it)."""
    if path and Path(path).exists():
        return str(path)
    message = f"{what} is not installed (./scripts/test installs it)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def run(*cmd: str, timeout: float = 120, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, **kw)


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    return load("data")


@pytest.fixture(scope="module")
def service() -> dict[str, Any]:
    return load("service")


@pytest.fixture(scope="module")
def pipeline() -> dict[str, Any]:
    return load("pipeline")


def role_statements(template: dict[str, Any], role: str) -> list[dict[str, Any]]:
    return [s for p in policies("", template) if p.resource == role for s in p.statements()]


def actions_of(statements: list[dict[str, Any]]) -> set[str]:
    return {a for s in statements for a in as_list(s["Action"])}


def container(service: dict[str, Any]) -> dict[str, Any]:
    defs: list[dict[str, Any]] = resources(service, "AWS::ECS::TaskDefinition")["TaskDefinition"]["Properties"][
        "ContainerDefinitions"
    ]
    return defs[0]


# ---- linters and scanners ----------------------------------------------------------------------------
def test_templates_exist() -> None:
    """The data, service and pipeline templates are the deploy/ templates."""
    assert set(TEMPLATES) == {"data", "service", "pipeline"}


def test_cfn_lint_is_clean() -> None:
    """cfn-lint reports nothing (not even a warning) on any template."""
    done = run(need(BIN / "cfn-lint", "cfn-lint"), *map(str, TEMPLATES.values()))
    assert done.returncode == 0, done.stdout + done.stderr


def test_cfn_lint_catches_a_broken_template(tmp_path: Path) -> None:
    """The cfn-lint check can fail: an unknown property is reported."""
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "AWSTemplateFormatVersion: '2010-09-09'\nResources:\n  T:\n    Type: AWS::DynamoDB::Table\n"
        "    Properties:\n      BilingMode: PAY_PER_REQUEST\n      KeySchema: [{AttributeName: k, KeyType: HASH}]\n"
    )
    done = run(need(BIN / "cfn-lint", "cfn-lint"), str(broken))
    assert done.returncode != 0 and "BilingMode" in done.stdout


def test_hadolint_is_clean() -> None:
    """hadolint reports nothing on the Dockerfile."""
    done = run(need(BIN / "hadolint", "hadolint"), "Dockerfile")
    assert done.returncode == 0, done.stdout + done.stderr


def test_buildspec_is_valid_against_the_schema(tmp_path: Path) -> None:
    """buildspec.yml validates against deploy/buildspec.schema.json, and a misspelt phase does not."""
    tool = need(BIN / "check-jsonschema", "check-jsonschema")
    schema_file = str(DEPLOY / "buildspec.schema.json")
    ok = run(tool, "--schemafile", schema_file, "buildspec.yml")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    typo = tmp_path / "buildspec.yml"
    typo.write_text((ROOT / "buildspec.yml").read_text().replace("post_build:", "postbuild:"))
    bad = run(tool, "--schemafile", schema_file, str(typo))
    assert bad.returncode != 0 and "postbuild" in bad.stdout


def test_buildspec_pushes_the_commit_tag_and_writes_imagedefinitions() -> None:
    """The build tags the image with the commit, pushes it, and names the task definition's container."""
    spec = yaml.safe_load((ROOT / "buildspec.yml").read_text())
    commands = "\n".join(c for phase in spec["phases"].values() for c in phase["commands"])
    assert "CODEBUILD_RESOLVED_SOURCE_VERSION" in commands
    assert 'docker push "${REPOSITORY_URI}:${IMAGE_TAG}"' in commands
    assert "pytest" in commands and "ruff check" in commands and "cfn-lint" in commands
    assert spec["artifacts"]["files"] == ["imagedefinitions.json"]
    name = re.search(r'\[\{"name":"%s"', commands)
    assert name and spec["env"]["variables"]["CONTAINER_NAME"] == "stratochat"


def _checkov_config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((ROOT / ".checkov.yaml").read_text())
    return config


def test_checkov_skips_each_have_a_reason_and_every_template_is_scanned() -> None:
    """Each skipped check in .checkov.yaml says why on its line, and the scan covers every template."""
    lines = [ln for ln in (ROOT / ".checkov.yaml").read_text().splitlines() if re.match(r"\s+- CKV", ln)]
    assert lines
    for line in lines:
        reason = line.partition("#")[2].strip()
        assert len(reason) > 30, f"skip without a reason: {line.strip()}"
    files = set(_checkov_config()["file"])
    assert {f"deploy/{p.name}" for p in TEMPLATES.values()} | {"Dockerfile"} <= files


def test_checkov_has_no_failed_check() -> None:
    """checkov (offline) fails no check on the templates or the Dockerfile, except the listed skips."""
    done = run(need(CHECKOV, "checkov (.venv-checkov)"), "--config-file", ".checkov.yaml", "-o", "json", timeout=300)
    reports = json.loads(done.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    by_type = {r["check_type"]: r for r in reports}
    assert set(by_type) == {"cloudformation", "dockerfile"}, done.stderr[-2000:]
    for kind, report in by_type.items():
        failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
        assert not failed, f"{kind}: {failed}"
        assert report["summary"]["parsing_errors"] == 0
        assert report["summary"]["passed"] > 20
    assert done.returncode == 0


def test_parliament_finds_nothing_in_any_policy() -> None:
    """parliament finds no issue in any identity or bucket policy, intrinsics resolved to example ARNs."""
    found = []
    for name, path in TEMPLATES.items():
        template = load(path)
        resolver = Resolver(template)
        found += [(p, resolver.resolve(p.document)) for p in policies(name, template)]
    assert len(found) == 6  # four roles, two bucket policies
    for (policy, _doc), findings in zip(found, parliament([doc for _, doc in found]), strict=True):
        assert findings == [], f"{policy.template}/{policy.resource}/{policy.name}: {findings}"


def test_parliament_can_fail() -> None:
    """The parliament check reports an action given a resource of the wrong kind."""
    bad = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::b"}],
    }
    assert parliament([bad])[0]


# ---- least privilege -----------------------------------------------------------------------------------
def test_no_wildcard_action_and_no_wildcard_resource_where_iam_allows_one() -> None:
    """No Allow has a wildcard action; Resource "*" only for actions that accept nothing else."""
    from tests.deploy.cfn import iam_resource_types

    types = iam_resource_types()
    star_actions = set()
    for name, path in TEMPLATES.items():
        for policy in policies(name, load(path)):
            for st in policy.statements():
                if st["Effect"] != "Allow":
                    continue
                acts = as_list(st["Action"])
                assert not any("*" in a for a in acts), f"{policy.resource}: wildcard action in {acts}"
                assert "NotAction" not in st and "NotResource" not in st
                if "*" in as_list(st["Resource"]):
                    assert as_list(st["Resource"]) == ["*"]
                    for a in acts:
                        assert types[a.lower()] == [""], f"{a} accepts a resource ARN; do not grant it on *"
                        star_actions.add(a)
    assert star_actions == {"ecr:GetAuthorizationToken", "ecs:DescribeTaskDefinition"}


def test_no_managed_policies_and_no_users() -> None:
    """No role carries a managed policy (AWS managed ones grant on *); no IAM users or access keys."""
    for path in TEMPLATES.values():
        template = load(path)
        for lid, role in resources(template, "AWS::IAM::Role").items():
            assert "ManagedPolicyArns" not in role["Properties"], lid
        kinds = {r["Type"] for r in resources(template).values()}
        assert not kinds & {"AWS::IAM::User", "AWS::IAM::AccessKey", "AWS::IAM::ManagedPolicy"}


def test_roles_trust_only_their_service_in_this_account() -> None:
    """Each role is assumable by one AWS service, and only on behalf of this account."""
    for path in TEMPLATES.values():
        for lid, role in resources(load(path), "AWS::IAM::Role").items():
            (st,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
            assert st["Action"] == "sts:AssumeRole" and len(st["Principal"]["Service"].split()) == 1, lid
            assert st["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}, lid


def test_execution_and_task_roles_are_separate(data: dict[str, Any], service: dict[str, Any]) -> None:
    """The task definition names two different roles; the execution role cannot touch app data and the task
    role cannot pull images or write logs."""
    props = resources(service, "AWS::ECS::TaskDefinition")["TaskDefinition"]["Properties"]
    assert props["ExecutionRoleArn"] != props["TaskRoleArn"]
    assert "ExecutionRoleArn" in json.dumps(props["ExecutionRoleArn"])
    assert "TaskRoleArn" in json.dumps(props["TaskRoleArn"])
    execution = actions_of(role_statements(data, "ExecutionRole"))
    task = actions_of(role_statements(data, "TaskRole"))
    assert {a.split(":")[0] for a in execution} == {"ecr", "logs", "ssm", "kms"}
    assert {a.split(":")[0] for a in task} == {"dynamodb", "s3", "ssm", "kms"}
    assert not execution & task - {"kms:Decrypt"}


def test_execution_role_is_scoped_to_its_repository_log_group_and_secrets(
    data: dict[str, Any], service: dict[str, Any]
) -> None:
    """Image pulls from this repository, logs into this log group, and exactly the task's Secrets."""
    by_sid = {s["Sid"]: s for s in role_statements(data, "ExecutionRole")}
    assert by_sid["EcrLogin"]["Resource"] == "*" and by_sid["EcrLogin"]["Action"] == "ecr:GetAuthorizationToken"
    assert by_sid["EcrPull"]["Resource"] == {"Fn::GetAtt": ["Repository", "Arn"]}
    assert "log-group:${LogGroup}:log-stream:*" in by_sid["Logs"]["Resource"]["Fn::Sub"]
    secrets = {str(r["Fn::Sub"]).rsplit("/", 1)[1] for r in by_sid["Secrets"]["Resource"]}
    injected = {s["Name"] for s in container(service)["Secrets"] if isinstance(s, dict) and "Name" in s}
    injected |= {s["Fn::If"][1]["Name"] for s in container(service)["Secrets"] if "Fn::If" in s}
    assert secrets == injected == {"SECRET_KEY", "REDIS_AUTH_TOKEN", "COGNITO_APP_CLIENT_SECRET"}
    for st in role_statements(data, "ExecutionRole"):
        for r in as_list(st["Resource"]):
            if isinstance(r, dict) and "Fn::Sub" in r and ":ssm:" in r["Fn::Sub"]:
                assert "parameter${SsmPath}/" in r["Fn::Sub"]


def _adapter_dynamodb_actions() -> set[str]:
    """The IAM actions the DynamoDB store's requests need, read from its source."""
    operations = {
        "get_item": {"GetItem"},
        "put_item": {"PutItem"},
        "update_item": {"UpdateItem"},
        "delete_item": {"DeleteItem"},
        "query": {"Query"},
        "scan": {"Scan"},
        "batch_get_item": {"BatchGetItem"},
        "batch_write_item": {"BatchWriteItem"},
        "transact_get_items": {"GetItem"},
        "describe_table": {"DescribeTable"},
        "transact_write_items": set(),  # authorized per item, below
    }
    kinds = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem", "ConditionCheck": "ConditionCheckItem"}
    source = "\n".join(p.read_text() for p in DYNAMO_ADAPTER.glob("*.py"))
    called = set(re.findall(r"""\.call\(\s*["'](\w+)["']""", source))
    unknown = called - set(operations)
    assert not unknown, f"add the IAM actions of {unknown} to this test's table"
    needed = {a for op in called for a in operations[op]}
    if "transact_write_items" in called:
        needed |= {kinds[k] for k in re.findall(r"""["'](Put|Update|Delete|ConditionCheck)["']\s*:""", source)}
    return {f"dynamodb:{a}" for a in needed}


def test_task_role_has_exactly_the_dynamodb_actions_the_store_uses(data: dict[str, Any]) -> None:
    """The task role's DynamoDB actions are the ones stratochat/adapters/store/dynamodb sends, no more."""
    (tables_statement,) = [s for s in role_statements(data, "TaskRole") if s["Sid"] == "Tables"]
    granted = set(as_list(tables_statement["Action"]))
    assert granted == _adapter_dynamodb_actions()


def test_task_role_is_scoped_to_this_stacks_tables_uploads_and_path(data: dict[str, Any]) -> None:
    """DynamoDB on this stack's tables (and their indexes), S3 on the uploads prefix, SSM on the path."""
    by_sid = {s["Sid"]: s for s in role_statements(data, "TaskRole")}
    table_ids = set(resources(data, "AWS::DynamoDB::Table"))
    arns = as_list(by_sid["Tables"]["Resource"])
    assert {r["Fn::GetAtt"][0] for r in arns if "Fn::GetAtt" in r} == table_ids
    indexed = {
        lid for lid, t in resources(data, "AWS::DynamoDB::Table").items() if "GlobalSecondaryIndexes" in t["Properties"]
    }
    assert {r["Fn::Sub"] for r in arns if "Fn::Sub" in r} == {f"${{{lid}.Arn}}/index/*" for lid in indexed}
    assert set(as_list(by_sid["Uploads"]["Action"])) == {"s3:PutObject", "s3:GetObject", "s3:DeleteObject"}
    assert by_sid["Uploads"]["Resource"] == {"Fn::Sub": "${UploadsBucket.Arn}/uploads/*"}
    assert by_sid["Bucket"] == {
        **by_sid["Bucket"],
        "Action": "s3:ListBucket",
        "Resource": {"Fn::GetAtt": ["UploadsBucket", "Arn"]},
    }
    assert by_sid["Settings"]["Action"] == "ssm:GetParametersByPath"
    assert all("parameter${SsmPath}" in r["Fn::Sub"] for r in by_sid["Settings"]["Resource"])
    # role_statements() takes each Fn::If's first branch: the grant made when SecretsKmsKeyArn is set.
    decrypt = by_sid["DecryptSettings"]
    assert decrypt["Resource"] == {"Ref": "SecretsKmsKeyArn"}
    assert "kms:ViaService" in decrypt["Condition"]["StringEquals"]


def test_task_role_has_exactly_the_s3_actions_the_blob_store_uses(data: dict[str, Any]) -> None:
    """The S3 actions granted are those the S3 blob store's calls need, and its keys are under uploads/."""
    calls = {
        "head_bucket": "s3:ListBucket",
        "head_object": "s3:GetObject",
        "get_object": "s3:GetObject",
        "delete_object": "s3:DeleteObject",
        "generate_presigned_post": "s3:PutObject",
        "put_object": "s3:PutObject",
    }
    source = (ROOT / "stratochat" / "adapters" / "blobs" / "s3.py").read_text()
    used = {c for c in calls if re.search(rf"\.{c}\(", source)}
    used |= set(re.findall(r"generate_presigned_url\(\s*[\"'](\w+)[\"']", source))
    assert used <= set(calls), f"add the IAM actions of {used - set(calls)} to this test's table"
    assert {"head_bucket", "generate_presigned_post", "delete_object"} <= used
    granted = {a for s in role_statements(data, "TaskRole") for a in as_list(s["Action"]) if a.startswith("s3:")}
    assert granted == {calls[c] for c in used}
    assert 'key=f"uploads/{file_id}"' in (ROOT / "stratochat" / "core" / "files.py").read_text()


# ---- data stack -------------------------------------------------------------------------------------------
def test_tables_are_the_stores_schema(data: dict[str, Any]) -> None:
    """The tables are exactly schema.table_definitions() (keys, indexes, on-demand) with TTL where the store
    expires items, point-in-time recovery and encryption."""
    expected = tables.expected_tables()
    actual = {lid: t["Properties"] for lid, t in resources(data, "AWS::DynamoDB::Table").items()}
    hint = "run: .venv/bin/python -m tests.deploy.tables --write"
    assert set(actual) == set(expected), hint
    for lid, props in expected.items():
        assert actual[lid] == props, f"{lid} differs from the schema; {hint}"
    assert tables.rewrite(TEMPLATES["data"].read_text()) == TEMPLATES["data"].read_text(), hint
    sessions = actual[tables.logical_id(schema.SESSIONS)]
    assert sessions["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True}


def test_stateful_resources_survive_stack_deletion(data: dict[str, Any]) -> None:
    """Tables, bucket, user pool, repository and log group are retained on delete and on replacement."""
    for lid, res in resources(data).items():
        if res["Type"] in (
            "AWS::DynamoDB::Table",
            "AWS::S3::Bucket",
            "AWS::Cognito::UserPool",
            "AWS::ECR::Repository",
            "AWS::Logs::LogGroup",
        ):
            assert res.get("DeletionPolicy") == "Retain" and res.get("UpdateReplacePolicy") == "Retain", lid


def test_bucket_is_private_encrypted_and_open_only_to_presigned_browser_requests(data: dict[str, Any]) -> None:
    """Public access blocked, encrypted, CORS for POST and GET from PublicUrl only, uploads/ lifecycle."""
    bucket = resources(data, "AWS::S3::Bucket")["UploadsBucket"]["Properties"]
    assert all(bucket["PublicAccessBlockConfiguration"].values()) and len(bucket["PublicAccessBlockConfiguration"]) == 4
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    (rule,) = bucket["CorsConfiguration"]["CorsRules"]
    assert rule["AllowedOrigins"] == [{"Ref": "PublicUrl"}] and sorted(rule["AllowedMethods"]) == ["GET", "POST"]
    # The same rule as `stratochat aws provision` (the S3 API's names differ from CloudFormation's).
    provisioned = cors_rule(["https://chat.example.com"])
    assert {
        "ID": rule["Id"],
        "AllowedOrigins": ["https://chat.example.com"],
        "AllowedMethods": sorted(rule["AllowedMethods"]),
        "AllowedHeaders": rule["AllowedHeaders"],
        "ExposeHeaders": rule["ExposedHeaders"],
        "MaxAgeSeconds": rule["MaxAge"],
    } == provisioned
    lifecycle = bucket["LifecycleConfiguration"]["Rules"]
    assert any(r["Prefix"] == "uploads/" and "AbortIncompleteMultipartUpload" in r for r in lifecycle)
    deny = resources(data, "AWS::S3::BucketPolicy")["UploadsBucketPolicy"]["Properties"]["PolicyDocument"]
    assert deny["Statement"][0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_cognito_client_has_a_secret_and_the_authorize_callback(data: dict[str, Any]) -> None:
    """Code flow with a client secret, callback <PublicUrl>/authorize, a hosted UI domain, the premium group."""
    client = data["Resources"]["UserPoolClient"]["Properties"]
    assert client["GenerateSecret"] is True and client["AllowedOAuthFlows"] == ["code"]
    assert client["CallbackURLs"] == [{"Fn::Sub": "${PublicUrl}/authorize"}]
    assert {"openid", "email", "profile"} <= set(client["AllowedOAuthScopes"])
    assert data["Resources"]["UserPoolDomain"]["Properties"]["Domain"] == {"Ref": "CognitoDomainPrefix"}
    assert data["Resources"]["PremiumGroup"]["Properties"]["GroupName"] == "premium"


def test_parameters_are_plain_strings_under_the_path(data: dict[str, Any]) -> None:
    """The stack's SSM parameters are String (secrets are made outside it) and live under SsmPath."""
    params = resources(data, "AWS::SSM::Parameter")
    assert len(params) >= 5
    for lid, p in params.items():
        assert p["Properties"]["Type"] == "String", lid
        assert p["Properties"]["Name"]["Fn::Sub"].startswith("${SsmPath}/"), lid
    assert data["Resources"]["LogGroup"]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


# ---- service stack --------------------------------------------------------------------------------------
def test_load_balancer_keeps_websockets_and_checks_readiness(service: dict[str, Any]) -> None:
    """Idle timeout 300 s, health check /readyz, 30 s deregistration, HTTPS with the given certificate, and
    HTTP only redirects."""
    res = service["Resources"]
    attrs = {a["Key"]: a["Value"] for a in res["LoadBalancer"]["Properties"]["LoadBalancerAttributes"]}
    assert attrs["idle_timeout.timeout_seconds"] == "300"
    tg = res["TargetGroup"]["Properties"]
    assert tg["HealthCheckPath"] == "/readyz" and tg["Port"] == 8000 and tg["TargetType"] == "ip"
    tg_attrs = {a["Key"]: a["Value"] for a in tg["TargetGroupAttributes"]}
    assert tg_attrs["deregistration_delay.timeout_seconds"] == "30"
    https = res["HttpsListener"]["Properties"]
    assert https["Protocol"] == "HTTPS" and https["Certificates"] == [{"CertificateArn": {"Ref": "CertificateArn"}}]
    assert https["SslPolicy"].startswith("ELBSecurityPolicy-TLS13")
    (redirect,) = res["HttpListener"]["Properties"]["DefaultActions"]
    assert redirect["Type"] == "redirect" and redirect["RedirectConfig"]["Protocol"] == "HTTPS"


def test_task_definition_runs_the_app_with_its_configuration(service: dict[str, Any]) -> None:
    """Environment and Secrets configure the cloud backends; drain and stop timeout match the server."""
    c = container(service)
    env = {e["Name"] if "Name" in e else e["Fn::If"][1]["Name"] for e in c["Environment"]}
    assert {
        "STRATOCHAT_STORE",
        "STRATOCHAT_TABLE_PREFIX",
        "S3_BUCKET_NAME",
        "REDIS_CLUSTER_ENDPOINT",
        "STRATOCHAT_PUBLIC_URL",
        "STRATOCHAT_SSM_PATH",
        "STRATOCHAT_FORWARDED_ALLOW_IPS",
        "COGNITO_USER_POOL_ID",
        "COGNITO_APP_CLIENT_ID",
        "COGNITO_DOMAIN",
    } <= env
    assert "SECRET_KEY" not in env
    by_name = {e["Name"]: e["Value"] for e in c["Environment"] if "Name" in e}
    assert by_name["STRATOCHAT_STORE"] == "dynamodb"
    assert by_name["REDIS_CLUSTER_ENDPOINT"]["Fn::Sub"].startswith("rediss://")
    assert by_name["STRATOCHAT_FORWARDED_ALLOW_IPS"] == {"Ref": "VpcCidr"}
    assert c["StopTimeout"] == 30 and c["User"] == "10001:10001" and c["ReadonlyRootFilesystem"] is True
    assert c["PortMappings"][0]["ContainerPort"] == 8000
    assert "/healthz" in c["HealthCheck"]["Command"][-1]
    deploy = service["Resources"]["Service"]["Properties"]["DeploymentConfiguration"]
    assert deploy["MinimumHealthyPercent"] == 100 and deploy["DeploymentCircuitBreaker"]["Rollback"] is True


def test_security_groups_chain_internet_alb_tasks_redis(service: dict[str, Any]) -> None:
    """Only the ALB reaches the tasks (port 8000) and only the tasks reach Redis (6379)."""
    res = service["Resources"]
    (task_in,) = res["TaskSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert task_in["SourceSecurityGroupId"] == {"Ref": "LoadBalancerSecurityGroup"} and task_in["FromPort"] == 8000
    assert "CidrIp" not in task_in
    (redis_in,) = res["RedisSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert redis_in["SourceSecurityGroupId"] == {"Ref": "TaskSecurityGroup"} and redis_in["FromPort"] == 6379
    extra_ingress = [lid for lid, r in res.items() if r["Type"] == "AWS::EC2::SecurityGroupIngress"]
    assert extra_ingress == []
    alb_ports = {r["FromPort"] for r in res["LoadBalancerSecurityGroup"]["Properties"]["SecurityGroupIngress"]}
    assert alb_ports == {80, 443}
    # Inline egress on every group removes EC2's default allow-all; the rest is explicit.
    for lid, group in resources(service, "AWS::EC2::SecurityGroup").items():
        assert group["Properties"].get("SecurityGroupEgress"), f"{lid} keeps the default allow-all egress"
    egress = {
        (
            r["Properties"]["GroupId"]["Ref"],
            r["Properties"]["DestinationSecurityGroupId"]["Ref"],
            r["Properties"]["FromPort"],
        )
        for r in resources(service, "AWS::EC2::SecurityGroupEgress").values()
    }
    assert egress == {
        ("LoadBalancerSecurityGroup", "TaskSecurityGroup", 8000),
        ("TaskSecurityGroup", "RedisSecurityGroup", 6379),
    }
    assert res["RedisSecurityGroup"]["Properties"]["SecurityGroupEgress"][0]["CidrIp"] == "255.255.255.255/32"


def test_redis_is_cluster_mode_tls_and_authenticated_in_private_subnets(service: dict[str, Any]) -> None:
    """Cluster mode enabled, TLS required, an AUTH token from SSM, private subnets, failover across zones."""
    redis = service["Resources"]["Redis"]["Properties"]
    assert redis["CacheParameterGroupName"].endswith(".cluster.on")
    assert redis["TransitEncryptionEnabled"] is True and redis["TransitEncryptionMode"] == "required"
    assert redis["AuthToken"]["Fn::Sub"][0] == "{{resolve:ssm-secure:${Path}/REDIS_AUTH_TOKEN}}"
    assert redis["AutomaticFailoverEnabled"] is True and redis["AtRestEncryptionEnabled"] is True
    subnets = service["Resources"]["RedisSubnetGroup"]["Properties"]["SubnetIds"]
    assert subnets == {"Ref": "PrivateSubnetIds"}
    network = service["Resources"]["Service"]["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network["Subnets"] == {"Ref": "PrivateSubnetIds"} and network["AssignPublicIp"] == "DISABLED"


def test_autoscaling_tracks_cpu_and_connections_per_task(service: dict[str, Any]) -> None:
    """Two target-tracking policies: average CPU, and ALB connections divided by running tasks."""
    policies_ = resources(service, "AWS::ApplicationAutoScaling::ScalingPolicy")
    configs = [p["Properties"]["TargetTrackingScalingPolicyConfiguration"] for p in policies_.values()]
    predefined = {
        c["PredefinedMetricSpecification"]["PredefinedMetricType"]
        for c in configs
        if "PredefinedMetricSpecification" in c
    }
    assert predefined == {"ECSServiceAverageCPUUtilization"}
    (custom,) = [c["CustomizedMetricSpecification"] for c in configs if "CustomizedMetricSpecification" in c]
    names = {m["MetricStat"]["Metric"]["MetricName"] for m in custom["Metrics"] if "MetricStat" in m}
    assert names == {"ActiveConnectionCount", "RunningTaskCount"}
    assert [m["Expression"] for m in custom["Metrics"] if m.get("ReturnData")] == ["connections / tasks"]


# ---- image ----------------------------------------------------------------------------------------------
def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    return [
        (m[1].upper(), m[2].strip())
        for m in re.finditer(r"^\s*([A-Za-z]+)\s+(.*)$", text, re.M)
        if not m[0].lstrip().startswith("#")
    ]


def test_dockerfile_is_multi_stage_non_root_and_exec_form() -> None:
    """A literal slim base in every stage, a non-root user, exec-form `stratochat serve`, SIGTERM and a
    python health check; nothing compiled or installed by apt in the final stage."""
    ins = _instructions()
    froms = [arg for op, arg in ins if op == "FROM"]
    assert len(froms) == 2 and len({f.split()[0] for f in froms}) == 1
    base = froms[0].split()[0]
    assert "$" not in base and re.search(r"python:3\.11-slim-bookworm$", base)
    final = ins[max(i for i, (op, _) in enumerate(ins) if op == "FROM") :]
    ops = {op: arg for op, arg in final}
    assert re.fullmatch(r"\d+:\d+", ops["USER"]) and not ops["USER"].startswith("0")
    assert json.loads(ops["ENTRYPOINT"]) == ["stratochat", "serve"]
    assert ops["STOPSIGNAL"] == "SIGTERM"
    assert 'CMD ["python"' in ops["HEALTHCHECK"] and "/healthz" in ops["HEALTHCHECK"]
    runs = " ".join(arg for op, arg in final if op == "RUN")
    assert not re.search(r"apt-get|gcc|build-essential|\bmake\b", runs)
    assert "STRATOCHAT_FORWARDED_ALLOW_IPS=127.0.0.1" in ops["ENV"] and "STRATOCHAT_HOST=0.0.0.0" in ops["ENV"]
    build_runs = " ".join(arg for op, arg in ins[: len(ins) - len(final)] if op == "RUN")
    assert "--require-hashes" in build_runs and "--only-binary=:all:" in build_runs


def _uv() -> list[str]:
    if shutil.which("uv"):
        return [str(shutil.which("uv"))]
    for python in (shutil.which("python3"), os.path.join(sys.base_prefix, "bin", "python3")):
        if python and subprocess.run([python, "-m", "uv", "--version"], capture_output=True).returncode == 0:
            return [python, "-m", "uv"]
    need(None, "uv")
    raise AssertionError("unreachable")


def test_image_requirements_are_the_lock() -> None:
    """deploy/requirements.txt is `uv export` of uv.lock (hashes included), so the image gets the locked versions."""
    cmd = ["export", "--frozen", "--no-dev", "--all-extras", "--no-emit-project"]
    done = run(*_uv(), *cmd)
    assert done.returncode == 0, done.stderr
    hint = f"regenerate: uv {' '.join(cmd)} > deploy/requirements.txt"
    assert (DEPLOY / "requirements.txt").read_text() == done.stdout, hint
    assert "--hash=sha256:" in done.stdout and "uvicorn==" in done.stdout


def test_dockerignore_keeps_the_context_to_what_the_image_needs() -> None:
    """.dockerignore excludes everything but the package, its metadata and the requirements."""
    lines = [
        ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln.strip() and not ln.startswith("#")
    ]
    assert lines[0] == "*"
    assert {ln[1:] for ln in lines if ln.startswith("!")} == {
        "pyproject.toml",
        "README.md",
        "stratochat/",
        "deploy/requirements.txt",
    }
