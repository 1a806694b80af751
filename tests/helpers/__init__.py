"""Plain helpers shared by the test modules: no fixtures and no tests here (fixtures live in conftest.py).

- :mod:`tests.helpers.servers`: real Spark servers (a standalone cluster, a Connect server) on 127.0.0.1.
"""
