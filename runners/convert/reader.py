"""Streaming reader for record files: a JSON array or JSONL, one record at a time.

Memory is bounded by one chunk plus one record, never the file: a JSON array is decoded
incrementally (``json.JSONDecoder.raw_decode`` over 1 MiB chunks), JSONL line by line.

A record that cannot be read (a broken JSONL line, bytes that are not UTF-8) comes back as a
``RawRecord`` with ``error`` set, so the caller decides between fail and skip. A JSON array whose
syntax breaks cannot be resynchronised (where would the next element start?), so that raises
``InputDataError`` at once whatever ``on_error`` says; the message suggests JSONL, where one
broken line can be skipped.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from registry.errors import InputDataError

CHUNK_CHARS = 1 << 20
MAX_RECORD_CHARS = 64 << 20
EXCERPT_CHARS = 200
# bytes that are not UTF-8 survive decoding as lone surrogates U+DC80..U+DCFF (surrogateescape)
_ESCAPED_BYTES = re.compile("[\udc80-\udcff]")
_WS = " \t\r\n"


@dataclass
class RawRecord:
    index: int
    """0-based position of the record (array element, or non-blank JSONL line)."""
    value: Any = None
    error: str | None = None
    """Why the record could not be read; ``None`` when ``value`` holds it."""
    line: int | None = None
    """1-based line number (JSONL only)."""
    excerpt: str = ""
    """The record's raw text, shortened: for the skipped-records sample."""

    def where(self) -> str:
        return f"record {self.index}" + (f" (line {self.line})" if self.line is not None else "")


def detect_format(path: Path, declared: Literal["auto", "json", "jsonl"]) -> Literal["json", "jsonl"]:
    """``json`` (one array) or ``jsonl``. ``auto``: ``.jsonl`` by name, else by the first byte
    (``[`` → array, ``{`` → JSONL; the user's hardgen ``.json`` file is in fact JSONL)."""
    if declared != "auto":
        return declared
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        return "jsonl"
    with path.open("rb") as f:
        head = f.read(4096).lstrip(b"\xef\xbb\xbf" + _WS.encode())
    if not head:
        raise InputDataError(f"{path}: the file is empty (expected a JSON array of records or JSONL)")
    if head[:1] == b"[":
        return "json"
    if head[:1] == b"{":
        return "jsonl"
    raise InputDataError(
        f"{path}: starts with {head[:20]!r}, which is neither a JSON array ('[') nor JSONL ('{{'); "
        "write a list of {\"messages\": [...]} records or one record per line"
    )


class RecordReader:
    """Iterate ``RawRecord``s of a file; after a full pass ``sha256`` holds the file's digest."""

    def __init__(self, path: Path, fmt: Literal["json", "jsonl"]):
        self.path = path
        self.fmt = fmt
        self.sha256: str | None = None

    def __iter__(self) -> Iterator[RawRecord]:
        digest = hashlib.sha256()
        records = self._jsonl(digest) if self.fmt == "jsonl" else self._json_array(digest)
        yield from records
        self.sha256 = digest.hexdigest()

    # -- JSONL ------------------------------------------------------------------------------
    def _jsonl(self, digest: Any) -> Iterator[RawRecord]:
        index = 0
        with self.path.open("rb") as f:
            for line_no, raw in enumerate(f, start=1):
                digest.update(raw)
                if line_no == 1 and raw.startswith(codecs.BOM_UTF8):
                    raw = raw[len(codecs.BOM_UTF8):]
                if not raw.strip():
                    continue
                rec = RawRecord(index=index, line=line_no)
                index += 1
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    rec.excerpt = raw[:EXCERPT_CHARS].decode("utf-8", "replace")
                    rec.error = f"not UTF-8 (byte {exc.start} of the line); re-encode the file as UTF-8"
                    yield rec
                    continue
                rec.excerpt = text[:EXCERPT_CHARS].rstrip()
                try:
                    rec.value = json.loads(text)
                except ValueError as exc:
                    rec.error = f"broken JSON ({exc})"
                yield rec
        if index == 0:
            raise InputDataError(f"{self.path}: the file has no records (it is empty or blank)")

    # -- JSON array -------------------------------------------------------------------------
    def _json_array(self, digest: Any) -> Iterator[RawRecord]:
        with self.path.open("rb") as f:
            cur = _Cursor(f, digest)
            if cur.text.startswith("\ufeff"):
                cur.pos = 1
            first = cur.skip_ws()
            if first == "":
                raise InputDataError(f"{self.path}: the file is empty (expected a JSON array of records)")
            if first != "[":
                raise self._broken(cur.offset, "expected '[' (a JSON array of records)")
            cur.pos += 1
            index = 0
            if cur.skip_ws() == "]":
                cur.pos += 1
            else:
                while True:
                    value, end = self._decode_one(cur, index)
                    raw = cur.text[cur.pos:end]
                    cur.pos = end
                    rec = RawRecord(index=index, excerpt=raw[:EXCERPT_CHARS])
                    if _ESCAPED_BYTES.search(raw):
                        rec.excerpt = rec.excerpt.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                        rec.error = "not UTF-8; re-encode the file as UTF-8"
                    else:
                        rec.value = value
                    yield rec
                    index += 1
                    sep = cur.skip_ws()
                    if sep == ",":
                        cur.pos += 1
                        continue
                    if sep == "]":
                        cur.pos += 1
                        break
                    what = "the file ends before the closing ']' (truncated?)" if sep == "" else (
                        f"expected ',' or ']' after record {index - 1}")
                    raise self._broken(cur.offset, what, index)
            if cur.skip_ws() != "":
                raise self._broken(cur.offset, "unexpected text after the closing ']'")
            if index == 0:
                raise InputDataError(f"{self.path}: the JSON array is empty (no records to convert)")

    def _decode_one(self, cur: _Cursor, index: int) -> tuple[Any, int]:
        """Decode the element at the cursor, reading more chunks while it is incomplete."""
        while True:
            cur.skip_ws()
            if len(cur.text) - cur.pos > MAX_RECORD_CHARS:
                raise self._broken(cur.offset, f"record {index} is larger than {MAX_RECORD_CHARS >> 20} MiB "
                                   "or its JSON never closes", index)
            try:
                value, end = _DECODER.raw_decode(cur.text, cur.pos)
            except json.JSONDecodeError as exc:
                # an element cut by the chunk end fails near the end (or as an unterminated string):
                # read on; any other failure is a real syntax error
                truncated = exc.pos >= len(cur.text) - 64 or exc.msg.startswith("Unterminated string")
                if truncated and cur.fill():
                    continue
                raise self._broken(cur.base + exc.pos, exc.msg, index) from None
            if end == len(cur.text) and cur.fill():  # a number at the buffer end might continue
                continue
            return value, end

    def _broken(self, offset: int, what: str, index: int | None = None) -> InputDataError:
        rec = f" in record {index}" if index is not None else ""
        return InputDataError(
            f"{self.path}: broken JSON array{rec} at character {offset}: {what}. A JSON array cannot "
            "be resumed past a syntax error, so this fails even with `on_error: skip`; fix the JSON, "
            "or write the records as JSONL (one per line) so that a broken line can be skipped"
        )


_DECODER = json.JSONDecoder()


class _Cursor:
    """A window of decoded text over a binary file: ``text[pos:]`` is unread; ``base`` is the
    file character offset of ``text[0]``. Bytes that are not UTF-8 become lone surrogates
    (surrogateescape) so one bad record does not stop decoding of the rest."""

    def __init__(self, f: Any, digest: Any):
        self.f = f
        self.digest = digest
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")
        self.text, self.pos, self.base, self.eof = "", 0, 0, False
        self.fill()

    @property
    def offset(self) -> int:
        return self.base + self.pos

    def fill(self) -> bool:
        """Append the next chunk; False at end of file."""
        if self.eof:
            return False
        chunk = self.f.read(CHUNK_CHARS)
        self.digest.update(chunk)
        self.eof = not chunk
        if self.pos > CHUNK_CHARS:  # drop consumed text: the buffer stays one record + a chunk
            self.base += self.pos
            self.text, self.pos = self.text[self.pos:], 0
        self.text += self.decoder.decode(chunk, final=self.eof)
        return True

    def skip_ws(self) -> str:
        """Skip whitespace; the next character, or "" at end of file."""
        while True:
            while self.pos < len(self.text) and self.text[self.pos] in _WS:
                self.pos += 1
            if self.pos < len(self.text) or not self.fill():
                return self.text[self.pos] if self.pos < len(self.text) else ""
