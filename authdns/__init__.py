"""authdns: an authoritative DNS server for YAML zones with load-aware MX and A/AAAA ordering."""

__version__ = "0.1.0"
