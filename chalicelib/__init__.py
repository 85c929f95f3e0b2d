"""Code shared by the Lambda handlers and the Glue job.

Nothing here imports pandas, pyarrow or pyspark: the Lambda package stays lean.
"""
