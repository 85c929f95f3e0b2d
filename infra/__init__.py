"""Infrastructure: the local stack (``infra.local``) that stands in for AWS and RDS on a laptop."""
