"""Noise transport messages read through one buffer (docs/p2p.md).

After the Noise XX handshake every byte on a connection is a transport
message: a 2-byte big-endian length, then that many bytes of ciphertext
(plaintext plus a 16-byte tag). py-libp2p 0.8.1's `SecureSession` reads one
through five layers of awaits (`read_msg` -> `read_length` -> `read_exactly`
-> `RawConnection.read` -> `TrioTCPStream.read`, a lock per read), two socket
reads per message (the 2 length bytes, then the body), and formats three
debug-log strings per message whether debug logging is on or not.

`BufferedNoiseSession` keeps the same wire format and the same `read`/`write`
contract but reads the socket in chunks into one buffer, parses the length
prefix and the ciphertext from it, and decrypts; its plaintext goes to a
second buffer that the muxer reads frames from (`read_exactly`, and
`take_buffered` without an await when the bytes are already there). A write
encrypts and sends the length-prefixed message in one socket write.

Bounds: a transport message is at most 65535 bytes (the 2-byte length cannot
say more), so the ciphertext buffer never holds more than one message plus
one read chunk; the plaintext buffer holds what the muxer asked for (a yamux
frame, whose size the muxer checks first). A message that fails to decrypt,
or that is shorter than its tag, ends the connection (`NoiseMessageError`).
"""

from __future__ import annotations

import os

import trio
from libp2p.abc import IRawConnection, ISecureConn
from libp2p.crypto.keys import KeyPair
from libp2p.io.exceptions import ConnectionClosedError, IncompleteReadError
from libp2p.io.trio import TrioTCPStream
from libp2p.network.connection.raw_connection import RawConnection
from libp2p.peer.id import ID
from libp2p.security.noise.io import MAX_PLAINTEXT_LENGTH, NoiseTransportReadWriter
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.security.secure_session import SecureSession

# Bytes asked of the socket per read: many small messages per read when the
# peer has sent several, and any one message (at most 2 + 65535 bytes) in two.
RECV_CHUNK_BYTES = 64 * 1024

# A socket's descriptor takes os.write on POSIX only.
_DIRECT_WRITE = os.name == "posix"

_LENGTH_BYTES = 2
_TAG_BYTES = 16


class NoiseMessageError(ConnectionClosedError):
    """A transport message that cannot be decrypted: the connection is unusable."""


class BufferedNoiseSession(SecureSession):
    """A Noise transport session reading through one buffer; same wire format.

    Built from the `SecureSession` py-libp2p's handshake returns, which has
    read nothing past the handshake's last message, so the socket's next
    byte is the first transport message's length prefix.
    """

    def __init__(self, session: SecureSession) -> None:
        rw = session.conn
        if not isinstance(rw, NoiseTransportReadWriter):
            raise TypeError("a Noise transport session is needed")
        super().__init__(
            local_peer=session.local_peer,
            local_private_key=session.local_private_key,
            remote_peer=session.remote_peer,
            remote_permanent_pubkey=session.remote_permanent_pubkey,
            is_initiator=session.is_initiator,
            conn=rw,
        )
        self._noise = rw.noise_state
        raw = rw.read_writer.read_write_closer
        # The trio socket itself when the raw connection is libp2p's TCP one:
        # no per-read lock or exception wrapping layers (their mapping is
        # repeated below); anything else through its own read/write.
        socket: trio.SocketStream | None = None
        if isinstance(raw, RawConnection) and isinstance(raw.stream, TrioTCPStream):
            socket = raw.stream.stream
        self._raw: IRawConnection = raw  # type: ignore[assignment]
        self._socket = socket
        # True while a write awaits `send_all`: a concurrent write (the muxer's
        # write lock makes none) then goes to `send_all` too, where trio refuses
        # a second sender, instead of putting its bytes on the socket first.
        self._sending = False
        self._cipher = bytearray()
        self._cipher_pos = 0
        self._plain = bytearray()
        self._plain_pos = 0
        self.messages_read = 0

    # -- the socket --------------------------------------------------------------

    async def _recv(self) -> bytes:
        """Up to RECV_CHUNK_BYTES from the socket; b"" at its end."""
        socket = self._socket
        if socket is None:
            return await self._raw.read(RECV_CHUNK_BYTES)
        try:
            return await socket.receive_some(RECV_CHUNK_BYTES)
        except trio.BrokenResourceError as exc:
            raise ConnectionClosedError(f"TCP connection reset: {exc}", transport="tcp") from exc
        except trio.ClosedResourceError:
            return b""  # closed here: end of stream, as libp2p's TCP stream says

    async def _send(self, data: bytes) -> None:
        socket = self._socket
        if socket is None:
            await self._raw.write(data)
            return
        if _DIRECT_WRITE and not self._sending:
            # One nonblocking write straight to the descriptor first: a message
            # the kernel takes whole needs no trip through the scheduler
            # (`send_all` makes one per call). The descriptor is checked open
            # just before, with nothing in between that awaits. Whatever the
            # kernel did not take goes through `send_all` below, awaited.
            fd = socket.socket.fileno()
            if fd == -1 or socket.socket.did_shutdown_SHUT_WR:
                return  # closed here: libp2p's TCP stream drops the write silently
            try:
                sent = os.write(fd, data)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                raise ConnectionClosedError(
                    f"TCP connection reset: {exc}", transport="tcp"
                ) from exc
            if sent == len(data):
                return
            data = data[sent:]
        sending, self._sending = self._sending, True
        try:
            await socket.send_all(data)
        except trio.BrokenResourceError as exc:
            raise ConnectionClosedError(f"TCP connection reset: {exc}", transport="tcp") from exc
        except trio.ClosedResourceError:
            return  # closed here: libp2p's TCP stream drops the write silently
        finally:
            self._sending = sending

    # -- transport messages ------------------------------------------------------

    def _buffered_message(self) -> bytes | None:
        """The next whole ciphertext in the buffer, consumed; None if incomplete."""
        buf, pos = self._cipher, self._cipher_pos
        if len(buf) - pos < _LENGTH_BYTES:
            return None
        end = pos + _LENGTH_BYTES + ((buf[pos] << 8) | buf[pos + 1])
        if len(buf) < end:
            return None
        message = bytes(buf[pos + _LENGTH_BYTES : end])
        if end == len(buf):
            buf.clear()
            self._cipher_pos = 0
        else:
            self._cipher_pos = end
        return message

    async def next_plaintext(self) -> bytes | None:
        """The next transport message's plaintext; None at a clean end of stream."""
        while True:
            message = self._buffered_message()
            if message is not None:
                break
            if self._cipher_pos:
                del self._cipher[: self._cipher_pos]
                self._cipher_pos = 0
            data = await self._recv()
            if not data:
                if self._cipher:
                    raise IncompleteReadError(
                        "connection ended inside a Noise message",
                        expected_bytes=_LENGTH_BYTES,
                        received_bytes=len(self._cipher),
                    )
                return None
            self._cipher += data
        return self._decrypt(message)

    def _decrypt(self, message: bytes) -> bytes:
        if len(message) < _TAG_BYTES:
            raise NoiseMessageError("Noise message shorter than its tag")
        try:
            plain: bytes = self._noise.decrypt(message)
        except Exception as exc:  # the cipher's InvalidTag, a depleted nonce
            raise NoiseMessageError(f"Noise message rejected: {type(exc).__name__}") from exc
        self.messages_read += 1
        return plain

    async def _fill_plain(self, need: int) -> None:
        """At least `need` unread plaintext bytes in the buffer, or raise."""
        while len(self._plain) - self._plain_pos < need:
            plain = await self.next_plaintext()
            if plain is None:
                got = len(self._plain) - self._plain_pos
                raise IncompleteReadError(
                    f"connection ended: expected {need} bytes, got {got}",
                    expected_bytes=need,
                    received_bytes=got,
                )
            if self._plain_pos:
                del self._plain[: self._plain_pos]
                self._plain_pos = 0
            self._plain += plain

    def pending_bytes(self) -> int:
        """Bytes received and not yet read: plaintext, and ciphertext not yet decrypted."""
        return len(self._plain) - self._plain_pos + len(self._cipher) - self._cipher_pos

    async def receive_more(self) -> None:
        """Wait for the socket's next bytes (no decryption); IncompleteReadError
        at the connection's end."""
        data = await self._recv()
        if not data:
            raise IncompleteReadError("connection ended", expected_bytes=1, received_bytes=0)
        self._cipher += data

    def take_buffered(self, n: int) -> bytes | None:
        """`n` plaintext bytes if that many have arrived (consumed), else None.

        Decrypts the whole messages already received if the plaintext buffer
        is short; never waits."""
        start = self._plain_pos
        end = start + n
        if len(self._plain) < end:
            if not self._decrypt_buffered(end - len(self._plain)):
                return None
            start = self._plain_pos
            end = start + n
        data = bytes(self._plain[start:end])
        if end == len(self._plain):
            self._plain.clear()
            self._plain_pos = 0
        else:
            self._plain_pos = end
        return data

    def _decrypt_buffered(self, short: int) -> bool:
        """Decrypt received whole messages into the plaintext buffer until
        `short` more bytes are there; False if the messages ran out first."""
        while short > 0:
            message = self._buffered_message()
            if message is None:
                return False
            plain = self._decrypt(message)
            if self._plain_pos:
                del self._plain[: self._plain_pos]
                self._plain_pos = 0
            self._plain += plain
            short -= len(plain)
        return True

    async def read_exactly(self, n: int) -> bytes:
        """Exactly `n` plaintext bytes; IncompleteReadError if the connection ends."""
        data = self.take_buffered(n)
        if data is None:
            await self._fill_plain(n)
            data = self.take_buffered(n)
            assert data is not None
        return data

    # -- the ISecureConn contract -----------------------------------------------

    async def read(self, n: int | None = None) -> bytes:
        """Up to `n` plaintext bytes (one message's worth if None): what is
        buffered, else the next message's; raises at the connection's end."""
        if n == 0:
            return b""
        if len(self._plain) == self._plain_pos:
            plain = await self.next_plaintext()
            while not plain:  # a message may carry no plaintext
                if plain is None:
                    raise ConnectionClosedError("Connection closed")
                plain = await self.next_plaintext()
            if n is None or len(plain) <= n:
                return plain
            self._plain = bytearray(plain)
            self._plain_pos = 0
        available = len(self._plain) - self._plain_pos
        return self.take_buffered(available if n is None else min(n, available)) or b""

    async def write(self, data: bytes) -> None:
        """Each up-to-65519-byte piece one transport message, all in one socket write."""
        encrypt = self._noise.encrypt
        if len(data) <= MAX_PLAINTEXT_LENGTH:
            sealed = encrypt(data)
            await self._send(len(sealed).to_bytes(_LENGTH_BYTES, "big") + sealed)
            return
        out = bytearray()
        for start in range(0, len(data), MAX_PLAINTEXT_LENGTH):
            sealed = encrypt(data[start : start + MAX_PLAINTEXT_LENGTH])
            out += len(sealed).to_bytes(_LENGTH_BYTES, "big")
            out += sealed
        await self._send(bytes(out))


class BufferedNoiseTransport(NoiseTransport):
    """py-libp2p's Noise transport (same handshake) yielding `BufferedNoiseSession`s."""

    def __init__(self, libp2p_keypair: KeyPair, noise_privkey: object) -> None:
        super().__init__(libp2p_keypair, noise_privkey=noise_privkey)  # type: ignore[arg-type]

    async def secure_inbound(self, conn: IRawConnection) -> ISecureConn:
        return _buffered(await super().secure_inbound(conn))

    async def secure_outbound(self, conn: IRawConnection, peer_id: ID) -> ISecureConn:
        return _buffered(await super().secure_outbound(conn, peer_id))


def _buffered(session: ISecureConn) -> ISecureConn:
    if isinstance(session, SecureSession) and isinstance(session.conn, NoiseTransportReadWriter):
        return BufferedNoiseSession(session)
    return session
