"""The HTTP API: request parsing, the published-result store, answers and responses.

Nothing here imports pandas, pyarrow, pyspark or awswrangler: it runs in a lean Lambda package.
"""
