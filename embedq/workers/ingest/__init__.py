"""Ingestion, worker side: embedding a batch's documents, writing their points to Qdrant (in
the background while the next batch embeds), and removing documents (deletes, a sync's sweep).

Re-index batches run here too: they embed and write like an ingestion's, into the new version.
"""
