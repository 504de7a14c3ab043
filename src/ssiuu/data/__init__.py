"""Data: the record schema, the default generator, user-data loaders, splits and validation."""
