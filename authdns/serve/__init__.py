"""A running server: transports, rate limiting, the wiring of what answers, workers and their channel, the zone watcher, systemd, and the Service that starts and stops it all."""
