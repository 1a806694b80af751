"""The ingest stage: raw transactions to transactions_clean and transactions_rejected."""
