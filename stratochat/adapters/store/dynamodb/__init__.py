"""The DynamoDB store (``STRATOCHAT_STORE=dynamodb``), a package split by concern; see ``store.py``."""

from .schema import TableNames, table_definitions, ttl_specifications
from .store import DynamoStore

__all__ = ["DynamoStore", "TableNames", "table_definitions", "ttl_specifications"]
