"""Relay's schema, as alembic revisions, and the functions that apply them."""

from relay_migrator.revisions import head_revision, upgrade_to_head

__all__ = ["head_revision", "upgrade_to_head"]
