"""Fault tests: real services stopped, crashed, emptied and cut off while embedq works."""
