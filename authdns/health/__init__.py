"""Health checks: the probes, the monitor that runs them and publishes a HealthView, and the watch list a snapshot asks for."""
