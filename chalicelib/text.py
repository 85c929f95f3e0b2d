"""How values are written for people: in messages, summaries and reports alike."""

from __future__ import annotations


def shown(value: str, limit: int = 60) -> str:
    """A value someone sent or wrote, quoted for a message, cut short when long."""
    return repr(value if len(value) <= limit else value[:limit] + "...")


def amount_text(amount: float) -> str:
    """A voucher amount with thousands separators; cents only when it has them."""
    return f"{amount:,.0f}" if float(amount).is_integer() else f"{amount:,.2f}"
