"""The DynamoDB part of deploy/data.yaml, derived from the store's own schema (the single source of truth).

``python -m tests.deploy.tables --write`` rewrites the two generated blocks of deploy/data.yaml (the tables,
and the task role's list of table ARNs) from ``stratochat.adapters.store.dynamodb.schema``; without
``--write`` it prints them. tests/deploy/test_templates.py fails, naming this command, when they differ.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from stratochat.adapters.store.dynamodb import schema

DATA_TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "data.yaml"
PREFIX_PARAMETER = "TablePrefix"


def logical_id(name: str) -> str:
    """The template's logical id of the table named ``<prefix><name>``."""
    return f"{name}Table"


def expected_tables() -> dict[str, dict[str, Any]]:
    """Logical id -> the CloudFormation properties each table must have (the schema's CreateTable
    kwargs with the prefix as a parameter, plus TTL, point-in-time recovery and encryption)."""
    ttl = {spec["TableName"]: spec["TimeToLiveSpecification"] for spec in schema.ttl_specifications("")}
    out: dict[str, dict[str, Any]] = {}
    for definition in schema.table_definitions(""):
        name = definition["TableName"]
        props: dict[str, Any] = {"TableName": {"Fn::Sub": f"${{{PREFIX_PARAMETER}}}{name}"}}
        props.update({k: v for k, v in definition.items() if k != "TableName"})
        if name in ttl:
            props["TimeToLiveSpecification"] = {
                "AttributeName": ttl[name]["AttributeName"],
                "Enabled": ttl[name]["Enabled"],
            }
        props["PointInTimeRecoverySpecification"] = {"PointInTimeRecoveryEnabled": True}
        props["SSESpecification"] = {"SSEEnabled": True}
        out[logical_id(name)] = props
    return out


def _flow(pairs: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in pairs.items()) + "}"


def render_tables() -> str:
    lines: list[str] = []
    for lid, props in expected_tables().items():
        lines += [
            f"  {lid}:",
            "    Type: AWS::DynamoDB::Table",
            "    DeletionPolicy: Retain",
            "    UpdateReplacePolicy: Retain",
            "    Properties:",
            f'      TableName: !Sub "{props["TableName"]["Fn::Sub"]}"',
            f"      BillingMode: {props['BillingMode']}",
            "      AttributeDefinitions:",
            *(f"        - {_flow(a)}" for a in props["AttributeDefinitions"]),
            "      KeySchema:",
            *(f"        - {_flow(k)}" for k in props["KeySchema"]),
        ]
        if props.get("GlobalSecondaryIndexes"):
            lines.append("      GlobalSecondaryIndexes:")
            for index in props["GlobalSecondaryIndexes"]:
                lines += [f"        - IndexName: {index['IndexName']}", "          KeySchema:"]
                lines += [f"            - {_flow(k)}" for k in index["KeySchema"]]
                projection = dict(index["Projection"])
                attrs = projection.pop("NonKeyAttributes", None)
                lines.append(f"          Projection: {_flow(projection)}")
                if attrs:
                    lines.append(f"          # NonKeyAttributes: {attrs}")
        if "TimeToLiveSpecification" in props:
            ttl = props["TimeToLiveSpecification"]
            lines.append(f"      TimeToLiveSpecification: {{AttributeName: {ttl['AttributeName']}, Enabled: true}}")
        lines += [
            "      PointInTimeRecoverySpecification: {PointInTimeRecoveryEnabled: true}",
            "      SSESpecification: {SSEEnabled: true}",
        ]
    return "\n".join(lines) + "\n"


def render_arns() -> str:
    """Each table's ARN, and its indexes' for the tables that have some (Query on an index needs both)."""
    lines = []
    for lid, props in expected_tables().items():
        lines.append(f"                  - !GetAtt {lid}.Arn\n")
        if props.get("GlobalSecondaryIndexes"):
            lines.append(f'                  - !Sub "${{{lid}.Arn}}/index/*"\n')
    return "".join(lines)


BLOCKS = {"tables": render_tables, "table-arns": render_arns}


def rewrite(text: str) -> str:
    for name, render in BLOCKS.items():
        pattern = re.compile(rf"(# BEGIN generated {name}[^\n]*\n)(.*?)(^\s*# END generated {name})", re.S | re.M)
        if not pattern.search(text):
            raise SystemExit(f"deploy/data.yaml has no '# BEGIN generated {name}' block")
        text = pattern.sub(lambda m, r=render: m.group(1) + r() + m.group(3), text)  # type: ignore[misc]
    return text


def main(argv: list[str]) -> int:
    if "--write" in argv:
        DATA_TEMPLATE.write_text(rewrite(DATA_TEMPLATE.read_text()))
        print(f"rewrote the generated blocks of {DATA_TEMPLATE}")
    else:
        print(render_tables() + "\n" + render_arns(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
