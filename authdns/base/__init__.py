"""The DNS vocabulary and runtime helpers every layer uses: protocol numbers, names as wire bytes, record types, host:port, TSIG, the event loop and log format. Imports nothing else of authdns."""
