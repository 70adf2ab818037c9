"""The error a client raises when a node answers with a failure."""

from __future__ import annotations


class SeqnetApiError(Exception):
    """A node answered a request with a non-2xx status.

    `status` is the HTTP status (0 when the node could not be reached at all),
    `code` the machine-readable error code from the body (empty if it had
    none) and `message` the human-readable text.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"HTTP {status} {code or 'error'}: {message}")
        self.status = status
        self.code = code
        self.message = message

    @property
    def retryable(self) -> bool:
        """True for failures worth retrying later: unreachable, overloaded, 5xx."""
        return self.status == 0 or self.status == 429 or self.status >= 500
