"""The `caller` dependency: the request's API key, checked, rate-limited and counted.

401 for a missing, malformed, unknown or revoked key; 429 with Retry-After when the key's token
bucket is empty or it has its concurrency limit of requests in flight. The key is never logged:
`request.state.key_id` (the public id) is what log lines name.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio.to_thread
from fastapi import Request

from ragline.server.errors import ApiError
from ragline.server.keys import ApiKey
from ragline.server.limits import Lease, LimitExceeded
from ragline.server.state import ServerState

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


@dataclass
class Caller:
    """The authenticated key of a request, holding one of its concurrency slots."""

    key: ApiKey
    lease: Lease

    def require(self, collection: str) -> None:
        """403 unless this key may use `collection`."""
        if not self.key.allows(collection):
            raise ApiError(403, "forbidden", f"this API key may not use collection "
                           f"{collection!r} (it may use: {', '.join(self.key.collections)})")

    def hold(self) -> Lease:
        """Take over the concurrency slot (a streaming response frees it when it ends)."""
        lease, self.lease = self.lease, Lease(lambda: None)
        return lease


def state_of(request: Request) -> ServerState:
    state: ServerState = request.app.state.ragline
    return state


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise ApiError(401, "missing_key", "this endpoint needs an API key: send "
                       "`Authorization: Bearer KEY` (`ragline keys create` makes one)", _CHALLENGE)
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "invalid_key", "the Authorization header must read `Bearer KEY`",
                       _CHALLENGE)
    return token.strip()


def _admit(state: ServerState, token: str) -> tuple[ApiKey, Lease | LimitExceeded] | None:
    """The key of `token` (None: not valid) and a slot of its limits, or why not: one trip
    to a thread, as both may read a file (the keys; the shared limits of several workers)."""
    key = state.keys.authenticate(token)
    if key is None:
        return None
    settings = state.settings
    try:
        return key, state.limits.admit(key.id, rate=key.rate or settings.rate_per_second,
                                       burst=key.burst or settings.burst,
                                       concurrency=key.concurrency or settings.concurrency)
    except LimitExceeded as exc:
        return key, exc


async def caller(request: Request) -> AsyncIterator[Caller]:
    state = state_of(request)
    token = bearer_token(request)
    admitted = await anyio.to_thread.run_sync(_admit, state, token)
    del token
    if admitted is None:
        raise ApiError(401, "invalid_key", "the API key is not valid (unknown or revoked)",
                       _CHALLENGE)
    key, lease = admitted
    request.state.key_id = key.id
    if isinstance(lease, LimitExceeded):
        raise lease
    found = Caller(key, lease)
    try:
        yield found
    finally:
        found.lease.release()
