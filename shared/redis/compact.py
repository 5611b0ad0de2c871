"""Compact stored values: raw deflate primed with a preset dictionary, where it pays.

A value of a few hundred bytes hardly compresses on its own (deflate has little to refer
back to), yet most of it (field names, enum values, the shapes of ids, URLs and timestamps)
is the same in every value of its kind. Primed with a dictionary of those, deflate makes the
seed's 1.2 KB `created` event ~220 bytes in ~12 µs and reads it back in ~2 µs (2-core dev
machine, values that vary as real ones do). The cost is deflate's own work: level 3 (the
fast matcher, within a few bytes of level 6 here), a 4 KB window and memLevel 4 keep its
state small, and each value starts from a copy of a compressor already primed with the
dictionary instead of loading the dictionary again.

Stored form: the marker byte then the deflate stream, or the value itself where compressing
does not make it shorter. A codec's raw values never start with its marker (JSON starts with
`{`, a msgpack map with 0x80-0x8f/0xde/0xdf; the markers are control bytes), so a reader tells
the two apart by the first byte.

A dictionary is part of the stored format: never edit one that values were written with.
A new dictionary gets a new marker (and a new codec), and readers keep the old one.
"""

from __future__ import annotations

import zlib

import msgspec

_LEVEL = 3
# Raw deflate (no zlib header or checksum: the store is trusted), 4 KB window: room for a
# dictionary and the first KB of a value; later bytes refer back within the value itself.
_WBITS = -12
_MAX_DICTIONARY = 3 * 1024
_MEM_LEVEL = 4
# Inflating takes any window up to 32 KB, so values written with another window still read.
_INFLATE_WBITS = -15


class PresetDeflate:
    """One kind of stored value: its marker byte and its frozen dictionary."""

    def __init__(self, marker: int, zdict: bytes) -> None:
        if not 0 < marker < 0x20:
            raise ValueError("marker must be a control byte (never the start of JSON/msgpack)")
        if len(zdict) > _MAX_DICTIONARY:
            raise ValueError("a dictionary must leave most of the 4 KB window to the value")
        self._marker = bytes([marker])
        self._zdict = zdict
        self._primed = zlib.compressobj(
            _LEVEL, zlib.DEFLATED, _WBITS, _MEM_LEVEL, zlib.Z_DEFAULT_STRATEGY, zdict
        )

    @property
    def dictionary(self) -> bytes:
        return self._zdict

    def pack(self, data: bytes) -> bytes:
        """The stored form of `data`: compressed when that is shorter, else `data` itself."""
        deflate = self._primed.copy()
        packed = self._marker + deflate.compress(data) + deflate.flush()
        if len(packed) < len(data) or data.startswith(self._marker):
            return packed
        return data

    def unpack(self, stored: bytes) -> bytes:
        """The original bytes of a stored form (compressed or not); a corrupt compressed
        form raises msgspec.DecodeError, like any undecodable stored value."""
        if not stored.startswith(self._marker):
            return stored
        try:
            inflate = zlib.decompressobj(_INFLATE_WBITS, self._zdict)
            data = inflate.decompress(memoryview(stored)[1:]) + inflate.flush()
        except zlib.error as exc:
            raise msgspec.DecodeError(f"corrupt compressed value: {exc}") from None
        if not inflate.eof:
            raise msgspec.DecodeError("corrupt compressed value: truncated")
        return data


def msgpack_names(names: str) -> bytes:
    """Whitespace-separated names as msgpack encodes them (fixstr: one length byte, then the
    text): what a map's keys and short enum values look like in a stored msgpack document."""
    out = bytearray()
    for name in names.split():
        raw = name.encode()
        if len(raw) > 31:
            raise ValueError(f"not a fixstr: {name!r}")
        out += bytes([0xA0 | len(raw)]) + raw
    return bytes(out)
