"""Deploying Voucher Selection to AWS: build the packages (``package``), then the stacks in order
(``deploy``). docs/deploy.md describes the sequence; ``make package`` and ``make deploy`` run it."""
