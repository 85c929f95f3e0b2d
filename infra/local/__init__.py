"""The local stack: a moto server as the AWS endpoint and a PostgreSQL server, on loopback only.

``settings`` holds the local names and endpoints, ``postgres`` and ``moto`` start and stop one
server each, and ``stack`` brings everything up (``python -m infra.local.stack --help``).
"""
