"""The lakehouse platform below the stages: session, paths, Delta tables, publication, lock, catalog,
stage log, progress and privacy."""
