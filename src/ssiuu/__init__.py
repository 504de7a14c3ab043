"""ssiuu."""
