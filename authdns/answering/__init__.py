"""The answer engine and its bytes: parse a query, resolve it to an Answer (pure), render it, and the fast path's byte helpers."""
