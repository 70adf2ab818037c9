"""Node APIs as what an evidence watcher compares the L1 with (`seqnet watch`).

    GET /v1/status                         height and view (the highest of the nodes)
    GET /v1/views/{v}                      each node's certificates of view v
    GET /v1/evidence                       each node's persisted evidence
    GET /v1/blocks/{h}/namespaces/0        a block with its own finalization
                                           certificate (404: not held there)

Nothing a node answers is trusted: answers are size-bounded, every field is
type-checked, and a block's digest is recomputed from its fields. A lying node
can at worst make the watcher try evidence that the contract refuses when the
transaction is estimated, before any gas is spent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import httpx
import msgspec
import trio

from consensus.messages import Block, Certificate, Vote, VoteKind
from sequencer_net.l1.evidence_watch import EpochEvidence, Finalized, SourceUnavailable
from sequencer_net.storage.node_store import EvidenceRecord

TIMEOUT_S: Final = 10.0
MAX_ANSWER_BYTES: Final = 16 << 20
"""1,000 evidence records of ~800 bytes, or one block of at most 4 MiB payload in hex."""
_KINDS: Final = {kind.name.lower(): kind for kind in VoteKind}


class NodeApiSource:
    """One or more node APIs; a node that does not answer fails the round."""

    def __init__(self, urls: Sequence[str], timeout_s: float = TIMEOUT_S) -> None:
        self.urls = [url.rstrip("/") for url in urls]
        self.client = httpx.Client(timeout=timeout_s)

    def close(self) -> None:
        self.client.close()

    def _get(self, url: str, path: str, missing_ok: bool = False) -> Any:
        """Blocking: the JSON answer of GET url+path (None for a 404 when `missing_ok`)."""
        try:
            with self.client.stream("GET", url + path) as response:
                if missing_ok and response.status_code == 404:
                    return None
                if response.status_code != 200:
                    raise SourceUnavailable(f"{url}{path}: HTTP {response.status_code}")
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_ANSWER_BYTES:
                        raise SourceUnavailable(
                            f"{url}{path}: answer over {MAX_ANSWER_BYTES} bytes"
                        )
            return msgspec.json.decode(bytes(body))
        except httpx.HTTPError as exc:
            raise SourceUnavailable(f"node unreachable at {url}: {exc}") from None
        except msgspec.DecodeError:
            raise SourceUnavailable(f"{url}{path}: not JSON") from None

    async def _each(self, path: str, missing_ok: bool = False) -> list[tuple[str, Any]]:
        out = []
        for url in self.urls:
            answer = await trio.to_thread.run_sync(lambda u=url: self._get(u, path, missing_ok))
            out.append((url, answer))
        return out

    def status(self, url: str) -> dict[str, Any]:
        """Blocking: one node's /v1/status (SourceUnavailable if it is not an object)."""
        answer = self._get(url.rstrip("/"), "/v1/status")
        if not isinstance(answer, dict):
            raise SourceUnavailable(f"{url}: /v1/status is not an object")
        return answer

    async def height(self) -> int:
        heights = []
        for url, answer in await self._each("/v1/status"):
            height = answer.get("height") if isinstance(answer, dict) else None
            if not isinstance(height, int) or isinstance(height, bool) or height < 0:
                raise SourceUnavailable(f"{url}: /v1/status has no height")
            heights.append(height)
        return max(heights)

    async def evidence(self) -> list[EpochEvidence]:
        records = []
        for url, answer in await self._each("/v1/evidence"):
            listed = answer.get("evidence") if isinstance(answer, dict) else None
            if not isinstance(listed, list):
                raise SourceUnavailable(f"{url}: /v1/evidence has no evidence list")
            for item in listed:
                try:
                    records.append(_evidence(item))
                except (ValueError, KeyError, TypeError, msgspec.ValidationError) as exc:
                    raise SourceUnavailable(f"{url}: malformed evidence: {exc}") from None
        return records

    async def finalized(self, height: int) -> list[Finalized]:
        found = []
        for url, answer in await self._each(f"/v1/blocks/{height}/namespaces/0", missing_ok=True):
            if answer is None:
                continue
            try:
                block, cert = _block(answer["block"]), _certificate(answer["certificate"])
            except (ValueError, KeyError, TypeError, msgspec.ValidationError) as exc:
                raise SourceUnavailable(f"{url}: malformed block {height}: {exc}") from None
            if block.height != height or cert.kind != VoteKind.FINALIZE:
                raise SourceUnavailable(f"{url}: block {height} answered with another height")
            found.append(Finalized(block.digest(), (cert,)))
        return found

    async def view(self) -> int:
        views = [0]
        for _url, answer in await self._each("/v1/status"):
            view = answer.get("view") if isinstance(answer, dict) else None
            if isinstance(view, int) and not isinstance(view, bool) and view >= 0:
                views.append(view)  # a full node reports no view: it counts as 0
        return max(views)

    async def view_certificates(self, view: int) -> list[Certificate]:
        found: list[Certificate] = []
        for url, answer in await self._each(f"/v1/views/{view}", missing_ok=True):
            if answer is None:
                continue  # a node without the endpoint
            listed = answer.get("certificates") if isinstance(answer, dict) else None
            if not isinstance(listed, list):
                raise SourceUnavailable(f"{url}: /v1/views/{view} has no certificate list")
            for item in listed:
                try:
                    cert = _certificate(item)
                except (ValueError, KeyError, TypeError, msgspec.ValidationError) as exc:
                    raise SourceUnavailable(f"{url}: malformed certificate: {exc}") from None
                if cert.view != view:
                    raise SourceUnavailable(f"{url}: view {view} answered with another view")
                if cert not in found:
                    found.append(cert)
        return found


def _tag(struct: type[msgspec.Struct]) -> Any:
    """The tag a tagged array-like struct's encoding starts with."""
    return struct.__struct_config__.tag


def _bytes(value: object) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ValueError("expected 0x hex")
    return bytes.fromhex(value[2:])


def _vote(raw: dict[str, Any]) -> Vote:
    kind = _KINDS[raw["kind"]]
    return msgspec.convert(
        [
            _tag(Vote),
            kind,
            raw["view"],
            raw["height"],
            _bytes(raw["block"]),
            raw["signer"],
            _bytes(raw["signature"]),
        ],
        Vote,
    )


def _evidence(raw: dict[str, Any]) -> EpochEvidence:
    """One /v1/evidence record; a record without "epoch" (a chain of one epoch) is
    epoch 0's."""
    first, second = _vote(raw["first"]), _vote(raw["second"])
    reason = raw.get("reason")
    epoch = raw.get("epoch", 0)
    if not isinstance(epoch, int) or isinstance(epoch, bool) or not 0 <= epoch < 2**32:
        raise ValueError("epoch is not an epoch number")
    record = EvidenceRecord(
        offender=first.signer,
        first=first,
        second=second,
        reason=reason[:200] if isinstance(reason, str) else "",
    )
    return EpochEvidence(epoch, record)


def _block(raw: dict[str, Any]) -> Block:
    return msgspec.convert(
        [
            raw["view"],
            raw["height"],
            _bytes(raw["parent"]),
            raw["proposer"],
            _bytes(raw["payload"]),
        ],
        Block,
    )


def _certificate(raw: dict[str, Any]) -> Certificate:
    signatures = raw["signatures"]
    if not isinstance(signatures, list):
        raise ValueError("signatures is not a list")
    return msgspec.convert(
        [
            _tag(Certificate),
            raw["kind"],
            raw["view"],
            raw["height"],
            _bytes(raw["block"]),
            raw["signers"],
            [_bytes(s) for s in signatures],
        ],
        Certificate,
    )
