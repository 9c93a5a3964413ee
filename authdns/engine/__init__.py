"""The query path with its state: the serving state, the answer cache, the responder (bytes in, bytes out) and the query log."""
