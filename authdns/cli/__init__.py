"""The authdns command: serve, check, import, export, demo, and the client commands that talk to a running server."""
