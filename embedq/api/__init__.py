"""The producer side: HTTP service, Python client and the `embedq` command line."""
