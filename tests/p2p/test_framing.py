"""Wire format: frames, requests and responses; limits checked before payloads."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sequencer_net.p2p.framing import (
    FRAME_HEADER,
    Channel,
    FrameReader,
    FrameTooLarge,
    ResponseStatus,
    TruncatedMessage,
    UnknownChannel,
    encode_frame,
    encode_request,
    encode_response,
)


class ChunkedSource:
    """A fake stream: serves `data` in the given chunk sizes, then b"" (end)."""

    def __init__(self, data: bytes, sizes: list[int]) -> None:
        self.data = data
        self.sizes = sizes or [1]
        self.pos = 0
        self.reads = 0

    async def read(self, n: int) -> bytes:
        size = min(n, self.sizes[self.reads % len(self.sizes)])
        self.reads += 1
        out = self.data[self.pos : self.pos + size]
        self.pos += len(out)
        return out


def test_frame_layout_is_channel_length_payload() -> None:
    assert encode_frame(Channel.BATCH, b"abc") == b"\x02\x00\x00\x00\x03abc"


frames_strategy = st.lists(
    st.tuples(st.sampled_from(list(Channel)), st.binary(max_size=300)), max_size=20
)


@given(frames=frames_strategy, sizes=st.lists(st.integers(1, 64), min_size=1, max_size=8))
async def test_frames_round_trip_over_any_chunking(
    frames: list[tuple[Channel, bytes]], sizes: list[int]
) -> None:
    source = ChunkedSource(b"".join(encode_frame(c, p) for c, p in frames), sizes)
    reader = FrameReader(source.read, max_payload=1000, chunk=64)
    decoded = []
    while (frame := await reader.read_frame()) is not None:
        decoded.append(frame)
    assert decoded == frames


async def test_oversized_length_is_rejected_before_the_payload_is_read() -> None:
    header = FRAME_HEADER.pack(Channel.CONSENSUS, 10_001)
    # Only the header is available; a reader that went on to read the payload
    # would see end of stream and raise TruncatedMessage instead.
    source = ChunkedSource(header, [len(header)])
    reader = FrameReader(source.read, max_payload=10_000)
    with pytest.raises(FrameTooLarge):
        await reader.read_frame()
    assert source.reads == 1


async def test_length_at_the_limit_is_accepted() -> None:
    source = ChunkedSource(encode_frame(Channel.BATCH, b"x" * 100), [7])
    reader = FrameReader(source.read, max_payload=100)
    assert await reader.read_frame() == (Channel.BATCH, b"x" * 100)


async def test_unknown_channel_byte_is_a_violation() -> None:
    source = ChunkedSource(b"\x09\x00\x00\x00\x00", [5])
    with pytest.raises(UnknownChannel):
        await FrameReader(source.read, max_payload=10).read_frame()


async def test_stream_ending_inside_a_frame_is_truncation() -> None:
    data = encode_frame(Channel.CONSENSUS, b"hello")[:-1]
    with pytest.raises(TruncatedMessage):
        await FrameReader(ChunkedSource(data, [3]).read, max_payload=10).read_frame()
    with pytest.raises(TruncatedMessage):
        await FrameReader(ChunkedSource(b"\x01\x00", [3]).read, max_payload=10).read_frame()


async def test_request_and_response_round_trip() -> None:
    reader = FrameReader(ChunkedSource(encode_request(b"ask"), [2]).read, max_payload=10)
    assert await reader.read_request() == b"ask"
    data = encode_response(ResponseStatus.HANDLER_ERROR, b"")
    reader = FrameReader(ChunkedSource(data, [1]).read, max_payload=10)
    assert await reader.read_response() == (ResponseStatus.HANDLER_ERROR, b"")


async def test_oversized_request_is_rejected() -> None:
    reader = FrameReader(ChunkedSource(encode_request(b"x" * 11), [64]).read, max_payload=10)
    with pytest.raises(FrameTooLarge):
        await reader.read_request()
