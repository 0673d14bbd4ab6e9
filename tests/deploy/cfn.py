"""Reading the CloudFormation templates in tests: YAML with the short intrinsic tags, the IAM policies in
them, and a resolver that turns intrinsics into example values so policy linters see concrete ARNs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
TEMPLATES = {p.stem: p for p in sorted(DEPLOY.glob("*.yaml"))}

ACCOUNT = "123456789012"
REGION = "eu-west-1"


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads ``!Ref x`` as ``{"Ref": "x"}``, ``!GetAtt a.b`` as ``{"Fn::GetAtt": ["a", "b"]}``
    and every other ``!Fn`` as ``{"Fn::Fn": ...}``, the template's JSON form."""


def _construct(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    if suffix == "Condition":
        return {"Condition": value}
    return {f"Fn::{suffix}": value}


_Loader.add_multi_constructor("!", _construct)


def load(name_or_path: str | Path) -> dict[str, Any]:
    path = TEMPLATES[name_or_path] if isinstance(name_or_path, str) else name_or_path
    data: dict[str, Any] = yaml.load(path.read_text(), Loader=_Loader)  # a SafeLoader subclass
    return data


def resources(template: dict[str, Any], kind: str | None = None) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if kind is None or v["Type"] == kind}


@dataclass(frozen=True)
class Policy:
    """One policy document of a template, with where it sits."""

    template: str
    resource: str
    name: str
    document: dict[str, Any]

    def statements(self) -> list[dict[str, Any]]:
        return [s for s in as_list(self.document["Statement"]) if isinstance(s, dict)]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def policies(template_name: str, template: dict[str, Any]) -> Iterator[Policy]:
    """Every identity policy (inline role policies and managed policies) and resource policy."""
    for lid, res in resources(template).items():
        props = res.get("Properties", {})
        if res["Type"] == "AWS::IAM::Role":
            for p in props.get("Policies", []):
                yield Policy(template_name, lid, p["PolicyName"], unwrap_if(p["PolicyDocument"]))
        elif res["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            yield Policy(template_name, lid, props.get("PolicyName", lid), unwrap_if(props["PolicyDocument"]))
        elif res["Type"] == "AWS::S3::BucketPolicy":
            yield Policy(template_name, lid, "bucket policy", unwrap_if(props["PolicyDocument"]))


def unwrap_if(value: Any) -> Any:
    """Fn::If picks its first (true) branch and AWS::NoValue disappears: the broadest form of a policy."""
    if isinstance(value, dict):
        if set(value) == {"Fn::If"}:
            return unwrap_if(value["Fn::If"][1])
        return {k: unwrap_if(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap_if(v) for v in value if v != {"Ref": "AWS::NoValue"}]
    return value


# ---- example values for intrinsics --------------------------------------------------------------------
_PSEUDO = {
    "AWS::AccountId": ACCOUNT,
    "AWS::Region": REGION,
    "AWS::Partition": "aws",
    "AWS::StackName": "stratochat-example",
    "AWS::URLSuffix": "amazonaws.com",
}

# What the data and service stacks export, for the templates that import them.
_EXPORTS = {
    "RepositoryArn": f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/stratochat",
    "RepositoryUri": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/stratochat",
    "ExecutionRoleArn": f"arn:aws:iam::{ACCOUNT}:role/stratochat-data-ExecutionRole-ABC",
    "TaskRoleArn": f"arn:aws:iam::{ACCOUNT}:role/stratochat-data-TaskRole-ABC",
    "SsmPath": "/stratochat/prod",
    "ClusterName": "stratochat-cluster",
    "ServiceName": "stratochat-service",
    "LogGroupName": "/stratochat/stratochat-data",
    "BucketName": "stratochat-data-uploadsbucket-abc",
    "TablePrefix": "stratochat-",
}


class Resolver:
    """Evaluates a template's intrinsics with example parameter values and physical names."""

    def __init__(self, template: dict[str, Any], parameters: dict[str, str] | None = None) -> None:
        self.template = template
        self.params = {k: str(v.get("Default", "")) for k, v in template.get("Parameters", {}).items()}
        self.params.update(
            {
                "PublicUrl": "https://chat.example.com",
                "CognitoDomainPrefix": "stratochat-example",
                "SecretsKmsKeyArn": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab",
                "ConnectionArn": f"arn:aws:codestar-connections:{REGION}:{ACCOUNT}:connection/abc-123",
                "CertificateArn": f"arn:aws:acm:{REGION}:{ACCOUNT}:certificate/abc-123",
                **(parameters or {}),
            }
        )

    def physical(self, lid: str) -> str:
        kind = self.template["Resources"][lid]["Type"]
        props = self.template["Resources"][lid].get("Properties", {})
        for key in ("TableName", "RepositoryName", "LogGroupName", "Name"):
            if key in props:
                return str(self.resolve(props[key]))
        return {"AWS::S3::Bucket": lid.lower() + "-abc"}.get(kind, f"{lid}-ABC")

    def attribute(self, lid: str, attr: str) -> str:
        kind = self.template["Resources"][lid]["Type"]
        name = self.physical(lid)
        if attr != "Arn":
            return f"{lid}.{attr}"
        return {
            "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}",
            "AWS::S3::Bucket": f"arn:aws:s3:::{name}",
            "AWS::ECR::Repository": f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{name}",
            "AWS::IAM::Role": f"arn:aws:iam::{ACCOUNT}:role/{name}",
            "AWS::CodeBuild::Project": f"arn:aws:codebuild:{REGION}:{ACCOUNT}:project/{name}",
            "AWS::Logs::LogGroup": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{name}:*",
        }.get(kind, f"arn:aws:example:{REGION}:{ACCOUNT}:{lid}")

    def ref(self, name: str) -> str:
        if name in _PSEUDO:
            return _PSEUDO[name]
        if name in self.params:
            return self.params[name]
        return self.physical(name)

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value if v != {"Ref": "AWS::NoValue"}]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                return self.attribute(arg[0], arg[1])
            if key == "Fn::Sub":
                text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
                local = {k: str(self.resolve(v)) for k, v in extra.items()}
                return re.sub(r"\$\{([^}!]+)\}", lambda m: self._sub_var(m.group(1), local), text)
            if key == "Fn::ImportValue":
                export = str(self.resolve(arg))
                return _EXPORTS[export.rsplit("-", 1)[1]]
            if key == "Fn::If":
                return self.resolve(arg[1])
            if key == "Fn::Join":
                return str(arg[0]).join(str(self.resolve(v)) for v in arg[1])
        return {k: self.resolve(v) for k, v in value.items()}

    def _sub_var(self, name: str, local: dict[str, str]) -> str:
        if name in local:
            return local[name]
        if "." in name:
            lid, attr = name.split(".", 1)
            return self.attribute(lid, attr)
        return self.ref(name)


def parliament(documents: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """parliament's findings for each policy document, run in one subprocess (parliament imports
    pkg_resources, whose deprecation warning the test session would turn into an error)."""
    script = (
        "import json, sys\n"
        "from parliament import analyze_policy_string, enhance_finding\n"
        "out = []\n"
        "for doc in json.load(sys.stdin):\n"
        "    policy = analyze_policy_string(json.dumps(doc))\n"
        "    out.append([{'issue': f.issue, 'severity': f.severity, 'title': f.title, 'detail': repr(f.detail)}\n"
        "                for f in map(enhance_finding, policy.findings)])\n"
        "json.dump(out, sys.stdout)\n"
    )
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", script],
        input=json.dumps(documents),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    findings: list[list[dict[str, Any]]] = json.loads(done.stdout)
    return findings


def iam_resource_types() -> dict[str, list[str]]:
    """``service:Action`` (lower case) -> the resource types IAM lets a policy name for it ('' = only
    "*"), from parliament's copy of the IAM service authorization reference."""
    script = (
        "import json\n"
        "from parliament import iam_definition\n"
        "print(json.dumps({f\"{s['prefix']}:{p['privilege']}\".lower():\n"
        "                  [r['resource_type'] for r in p['resource_types']]\n"
        "                  for s in iam_definition for p in s['privileges']}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    types: dict[str, list[str]] = json.loads(done.stdout)
    return types
