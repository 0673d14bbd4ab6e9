"""The DynamoDB tables: the single source of truth for the store, ``stratochat aws provision`` and the
CloudFormation template's test. Every table is ``<STRATOCHAT_TABLE_PREFIX>`` + its name, on-demand billing.

docs/dynamodb.md explains each table's items and access patterns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The original four tables of the project, then the ones the access patterns need.
USERS = "WebSocketUsers"  # PK user_id: profile, is_premium, storage_bytes
CHATS = "ChatSessions"  # PK chat_id: members, last_seq, last-message preview and timestamp
MESSAGES = "ChatMessages"  # PK chat_id, SK seq (number): ordered per chat
SESSIONS = "UserSessions"  # PK session_id, TTL attribute ttl
MEMBERS = "ChatMembers"  # PK user_id, SK chat_id: a user's chats (the inbox) and read markers
UNIQUE = "UniqueKeys"  # PK claim: claims that make usernames, external ids, direct chats, client_msg_ids unique
USAGE = "UsageCounters"  # PK user_id, SK day: messages stored that UTC day (the daily quota), TTL ttl
FILES = "Files"  # PK file_id: upload grants (pending) and the files messages carry (sent)

TABLES = (USERS, CHATS, MESSAGES, SESSIONS, MEMBERS, UNIQUE, USAGE, FILES)

# GSI of WebSocketUsers over every user ordered by username (`users list`). Its partition key is a constant,
# which is fine for an admin listing (the index is KEYS_ONLY, so only creating a user writes it); lookups of
# one username go through the strongly consistent UniqueKeys claim instead.
USERS_BY_USERNAME = "by_username"
DIRECTORY_ATTR = "directory"
DIRECTORY_VALUE = "users"

# Sparse GSI of Files over the pending grants by expiry (the purge): only pending records carry PENDING_ATTR,
# and sending the file removes it. A constant partition key again: grants are few and short-lived.
FILES_PENDING = "pending_by_expiry"
PENDING_ATTR = "pending"
PENDING_VALUE = "pending"

TTL_ATTRIBUTE = "ttl"  # epoch seconds; DynamoDB deletes expired items late (up to days), so reads filter too
TTL_TABLES = (SESSIONS, USAGE)


@dataclass(frozen=True, slots=True)
class TableNames:
    """The physical table names for one prefix."""

    users: str
    chats: str
    messages: str
    sessions: str
    members: str
    unique: str
    usage: str
    files: str

    @classmethod
    def for_prefix(cls, prefix: str) -> TableNames:
        return cls(*(prefix + name for name in TABLES))

    def all(self) -> tuple[str, ...]:
        return (
            self.users,
            self.chats,
            self.messages,
            self.sessions,
            self.members,
            self.unique,
            self.usage,
            self.files,
        )


def _key(hash_name: str, hash_type: str, range_name: str | None = None, range_type: str = "S") -> dict[str, Any]:
    schema = [{"AttributeName": hash_name, "KeyType": "HASH"}]
    attrs = [{"AttributeName": hash_name, "AttributeType": hash_type}]
    if range_name is not None:
        schema.append({"AttributeName": range_name, "KeyType": "RANGE"})
        attrs.append({"AttributeName": range_name, "AttributeType": range_type})
    return {"KeySchema": schema, "AttributeDefinitions": attrs}


def table_definitions(prefix: str) -> list[dict[str, Any]]:
    """``CreateTable`` keyword arguments for every table, in creation order."""
    users = _key("user_id", "S")
    users["AttributeDefinitions"] += [
        {"AttributeName": DIRECTORY_ATTR, "AttributeType": "S"},
        {"AttributeName": "username", "AttributeType": "S"},
    ]
    users["GlobalSecondaryIndexes"] = [
        {
            "IndexName": USERS_BY_USERNAME,
            "KeySchema": [
                {"AttributeName": DIRECTORY_ATTR, "KeyType": "HASH"},
                {"AttributeName": "username", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "KEYS_ONLY"},
        }
    ]
    files = _key("file_id", "S")
    files["AttributeDefinitions"] += [
        {"AttributeName": PENDING_ATTR, "AttributeType": "S"},
        {"AttributeName": "expires_at", "AttributeType": "N"},
    ]
    files["GlobalSecondaryIndexes"] = [
        {
            "IndexName": FILES_PENDING,
            "KeySchema": [
                {"AttributeName": PENDING_ATTR, "KeyType": "HASH"},
                {"AttributeName": "expires_at", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "ALL"},
        }
    ]
    keys = {
        USERS: users,
        CHATS: _key("chat_id", "S"),
        MESSAGES: _key("chat_id", "S", "seq", "N"),
        SESSIONS: _key("session_id", "S"),
        MEMBERS: _key("user_id", "S", "chat_id", "S"),
        UNIQUE: _key("claim", "S"),
        USAGE: _key("user_id", "S", "day", "S"),
        FILES: files,
    }
    return [{"TableName": prefix + name, **keys[name], "BillingMode": "PAY_PER_REQUEST"} for name in TABLES]


def ttl_specifications(prefix: str) -> list[dict[str, Any]]:
    """``UpdateTimeToLive`` keyword arguments for the tables whose items expire."""
    return [
        {"TableName": prefix + name, "TimeToLiveSpecification": {"Enabled": True, "AttributeName": TTL_ATTRIBUTE}}
        for name in TTL_TABLES
    ]


# What the running store sends, as IAM actions (TransactWriteItems is authorized per item as PutItem,
# UpdateItem, DeleteItem or ConditionCheckItem; the store's transactions use Put and Update items only).
# Grant them on every table of table_definitions() and on "<table ARN>/index/*" of the tables with indexes.
# The contract tests fail if the store sends anything else.
TASK_ACTIONS = (
    "dynamodb:BatchGetItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:DeleteItem",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:Query",
    "dynamodb:UpdateItem",
)

# What `stratochat aws provision` needs (an operator's or a pipeline's role, not the task's).
PROVISION_ACTIONS = (
    "dynamodb:CreateTable",
    "dynamodb:DescribeTable",
    "dynamodb:DescribeTimeToLive",
    "dynamodb:UpdateTable",
    "dynamodb:UpdateTimeToLive",
    "s3:CreateBucket",
    "s3:GetBucketCORS",
    "s3:GetBucketPublicAccessBlock",
    "s3:ListBucket",
    "s3:PutBucketCORS",
    "s3:PutBucketPublicAccessBlock",
)
