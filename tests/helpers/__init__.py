"""Plain helpers shared by the test modules: no fixtures and no tests here (fixtures live in conftest.py).

- :mod:`tests.helpers.config`: where the project and the real data are, and the configs tests run on
  (``make_config`` on base.yaml, ``retail_config`` on the Online Retail layout).
- :mod:`tests.helpers.data`: input builders (``write_csv``, the Online Retail line cases, lakehouse copies).
- :mod:`tests.helpers.runs`: ``segspark`` commands in fresh processes and what their tables are compared on.
- :mod:`tests.helpers.servers`: real Spark servers (a standalone cluster, a Connect server) on 127.0.0.1.

Test modules import from here, never from each other or from conftest.
"""
