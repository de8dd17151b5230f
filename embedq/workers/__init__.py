"""The Celery app, its thin tasks, and the batch pipeline from documents to Qdrant."""
