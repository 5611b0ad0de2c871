"""Compact stored values: zstd primed with a preset dictionary, where it pays.

A value of a few hundred bytes hardly compresses on its own (there is little to refer back
to), yet most of it (field names, enum values, the shapes of ids, URLs and timestamps) is the
same in every value of its kind. Primed with a dictionary of those, zstd makes the seed's
1.2 KB `created` event ~245 bytes in ~2 µs and reads it back in ~0.7 µs (2-core dev machine,
values that vary as real ones do). Level -1 (zstd's fast mode): against level 3, half the
time for the event and the record (2.0 against 3.7 µs, 1.8 against 3.6 µs) for 5-10 bytes
more each. The frame carries its content size and nothing else (no magic number, checksum
or dictionary id: the marker says which codec wrote it, and the store is trusted).

Until 2026-12-04 values were raw deflate primed with the same dictionaries (level 3, 4 KB
window): ~10 µs to pack the same event (~215 bytes) and ~2.4 µs to read it, a tenth of a
create's CPU across the API and the worker. Values written that way keep their own marker
(`deflate_marker`) and are still read.

Stored form: the marker byte then the zstd frame, or the value itself where compressing does
not make it shorter. A codec's raw values never start with one of its markers (JSON starts
with `{`, a msgpack map with 0x80-0x8f/0xde/0xdf; the markers are control bytes), so a reader
tells the forms apart by the first byte.

A dictionary is part of the stored format: never edit one that values were written with.
A new dictionary gets a new marker (and a new codec), and readers keep the old one.
"""

from __future__ import annotations

import threading
import zlib

import msgspec
import zstandard

_LEVEL = -1
_FORMAT = zstandard.FORMAT_ZSTD1_MAGICLESS
_PARAMS = zstandard.ZstdCompressionParameters.from_level(
    _LEVEL, format=_FORMAT, write_checksum=0, write_dict_id=0, write_content_size=1
)
_MAX_DICTIONARY = 3 * 1024
# A frame claiming more than this is corrupt (no stored value comes near it): refused before
# anything is allocated for it.
_MAX_VALUE = 8 * 1024 * 1024
# The deflate form (read only): any window up to 32 KB inflates.
_INFLATE_WBITS = -15


class _Coders(threading.local):
    """A thread's compressor and decompressor (zstandard's are not safe to share)."""

    def __init__(self, zdict: zstandard.ZstdCompressionDict) -> None:
        self.compressor = zstandard.ZstdCompressor(dict_data=zdict, compression_params=_PARAMS)
        self.decompressor = zstandard.ZstdDecompressor(dict_data=zdict, format=_FORMAT)


class PresetCodec:
    """One kind of stored value: its markers and its frozen dictionary."""

    def __init__(self, marker: int, zdict: bytes, *, deflate_marker: int) -> None:
        for byte in (marker, deflate_marker):
            if not 0 < byte < 0x20:
                raise ValueError("markers must be control bytes (never the start of JSON/msgpack)")
        if marker == deflate_marker:
            raise ValueError("the zstd and deflate forms need their own markers")
        if len(zdict) > _MAX_DICTIONARY:
            raise ValueError("a dictionary must leave most of deflate's 4 KB window to the value")
        self._marker = bytes([marker])
        self._deflate_marker = bytes([deflate_marker])
        self._zdict = zdict
        prepared = zstandard.ZstdCompressionDict(zdict, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
        prepared.precompute_compress(compression_params=_PARAMS)
        self._coders = _Coders(prepared)

    @property
    def dictionary(self) -> bytes:
        return self._zdict

    def pack(self, data: bytes) -> bytes:
        """The stored form of `data`: compressed when that is shorter, else `data` itself."""
        packed = self._marker + self._coders.compressor.compress(data)
        if len(packed) < len(data) or data[:1] in (self._marker, self._deflate_marker):
            return packed
        return data

    def unpack(self, stored: bytes) -> bytes:
        """The original bytes of a stored form (either compressed form, or raw); a corrupt
        compressed form raises msgspec.DecodeError, like any undecodable stored value."""
        first = stored[:1]
        if first == self._marker:
            frame = memoryview(stored)[1:]
            try:
                size = zstandard.get_frame_parameters(frame, format=_FORMAT).content_size
                if size > _MAX_VALUE:
                    raise msgspec.DecodeError("corrupt compressed value: implausible size")
                data: bytes = self._coders.decompressor.decompress(frame)
            except zstandard.ZstdError as exc:
                raise msgspec.DecodeError(f"corrupt compressed value: {exc}") from None
            return data
        if first == self._deflate_marker:
            return self._inflate(stored)
        return stored

    def _inflate(self, stored: bytes) -> bytes:
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
