"""Which Qdrant collection a batch writes to, or removes from."""

from __future__ import annotations

from embedq import jobs


def physical_collection(claim: jobs.Claim) -> str:
    """Workers write to the versioned collection the job was created with, not the alias."""
    return jobs.written_collection(claim.options)
