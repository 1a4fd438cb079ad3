"""Config schema, validation and plan."""
