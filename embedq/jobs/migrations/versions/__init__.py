"""Revisions of the ledger's schema, oldest first."""
