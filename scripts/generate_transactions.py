#!/usr/bin/env python3
"""Seeded synthetic transactions in the UCI "Online Retail" layout: see segspark/synthetic.py.

    python scripts/generate_transactions.py --rows 1000000 --out demo_data/transactions
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a checkout without `pip install` works too

from segspark.synthetic import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
