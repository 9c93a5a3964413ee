"""Operating a running server: the control socket, /metrics and the status page."""
