"""The on-device face template store: one SQLite file, matched in memory.

:mod:`.schema` owns every table of the file (people, templates, the audit
log's events) and their migrations; :mod:`.store` is the :class:`Gallery`
(validation, enroll, remove), :mod:`.lookup` its 1:1 and 1:K and
:mod:`.matching` the matrix math. Templates at rest: :mod:`.crypto` seals
each one with AES-GCM bound to its row, :mod:`.keys` finds the key (systemd
credential or key file), :mod:`.protection` checks it against the file and
encrypts clear-text galleries in place, :mod:`.files` creates every file
private, :mod:`.backup` writes passphrase-sealed backups. :mod:`.names`
refuses hostile names and flags look-alikes.
"""

from .matching import match_matrix
from .schema import APPLICATION_ID, MIGRATIONS, connect, decode_embedding, encode_embedding, schema_version
from .store import MAX_NAME_LENGTH, NORM_TOLERANCE, Gallery, PersonSummary

__all__ = [
    "APPLICATION_ID",
    "MAX_NAME_LENGTH",
    "MIGRATIONS",
    "NORM_TOLERANCE",
    "Gallery",
    "PersonSummary",
    "connect",
    "decode_embedding",
    "encode_embedding",
    "match_matrix",
    "schema_version",
]
