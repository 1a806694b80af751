"""The export stage: one published table, optionally filtered, written as a folder."""
