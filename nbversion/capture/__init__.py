"""What a snapshot collects. Each capture returns artifacts; none writes the catalog."""


def is_utf8(path: str) -> bool:
    """Whether a file name (as Python decodes it) can be written to the catalog."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
