"""The one exception hierarchy of nbversion.

Every message is a sentence that names the thing it is about, so the magics and the CLI can
show it as a single line. Catch :class:`NbversionError` to catch them all.
"""

from __future__ import annotations


class NbversionError(Exception):
    """Base class of every error nbversion raises on purpose."""


class UsageProblem(NbversionError):
    """The caller asked for something that cannot be done as asked (bad name, bad flag)."""


class RefNotFound(NbversionError):
    """A ref names no snapshot."""


class AmbiguousRef(NbversionError):
    """An id prefix matches more than one snapshot."""


class TagExists(NbversionError):
    """A tag with that name already points at a snapshot."""


class CatalogError(NbversionError):
    """The catalog file cannot be opened or used (not SQLite, from a newer version, ...)."""


class ObjectError(NbversionError):
    """An object in the store is missing, corrupt or has an invalid id."""


class MissingObject(ObjectError):
    """An object the catalog names is not in the store."""


class CorruptObject(ObjectError):
    """An object's bytes do not hash to its id."""


class StoreWriteError(ObjectError):
    """The object store could not be written (disk full, no permission, ...)."""


class InvalidObjectId(ObjectError):
    """A string that is not a well-formed object id was about to become a path."""


class DecodeError(NbversionError):
    """Verified bytes could not be turned back into a value (e.g. its class is not defined)."""


class UntrustedPickle(DecodeError):
    """A value stored as a pickle (which runs code when loaded) did not come from a source
    this machine trusts: it was not made here, restored with ``--trust``, or fetched from a
    remote trusted with ``nbversion remote trust``. Nothing was loaded."""


class EncodeError(NbversionError):
    """A value could not be serialized; the snapshot skips it and names it."""
