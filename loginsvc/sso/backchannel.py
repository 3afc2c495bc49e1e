"""Back-channel logout delivery (being written): placeholder kick so the core can be exercised."""


def kick() -> None:
    """Deliver due logouts soon (the real one is written in backchannel.py's next commit)."""
