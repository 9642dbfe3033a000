"""Typed errors a user can act on.

Messages name the reason and, where useful, a tag or a config key; they never carry a
value read from a file, because exception text ends up in logs and audit records.
"""

from __future__ import annotations


class PhiscrubError(Exception):
    """Base class; ``reason`` is a short, PHI-free category for audit records."""

    reason = "error"


class ConfigError(PhiscrubError):
    reason = "config"


class KeyMissing(PhiscrubError):
    reason = "key-missing"


class NotDicom(PhiscrubError):
    reason = "not-dicom"


class CorruptFile(PhiscrubError):
    reason = "corrupt"


class IncompleteInstance(CorruptFile):
    """Parses, but lacks an identifier every composite instance has (a file cut between two
    elements): it has no place in its study, and what it lost may be the very values its
    free text would be cleaned of."""

    reason = "incomplete"


class UnsupportedInput(PhiscrubError):
    reason = "unsupported"


class VerificationFailed(PhiscrubError):
    reason = "verification-failed"


class DroppedByPolicy(PhiscrubError):
    """The policy removes this item whole (a slide's label image): nothing is written for it.
    Not a failure: a runner records it with this reason and keeps no copy of it."""

    reason = "dropped-by-policy"


class TransientError(PhiscrubError):
    """Storage or network trouble that may pass (HTTP 5xx/429, a dropped connection, a
    timeout): a runner retries it with backoff instead of quarantining the item."""

    reason = "transient"


class StorageError(PhiscrubError):
    """Storage refused the request for good (HTTP 4xx: not found, forbidden, rejected
    instance): retrying cannot help."""

    reason = "storage"
