"""The report stage: one self-contained HTML page per snapshot, with its figures."""
