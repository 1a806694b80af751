"""The maintain stage: compact, Z-order and vacuum the lakehouse."""
