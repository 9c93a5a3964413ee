"""Server settings: ServerConfig, the one table of serve's settings (flags, config-file keys), the configuration file."""
