"""Reliability tests: delivery of progress events through real sockets, failures and shutdowns."""
