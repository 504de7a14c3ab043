"""The QA record every split holds, and JSONL reading and writing.

A record is a plain dict with the keys of :data:`FIELDS`:

- ``id``: stable identifier, the only thing about a row that logs and errors may show;
- ``subject``: the data subject a fact is about (empty for utility / benign rows);
- ``attribute``: what kind of fact it is (``birth_city``, ``capital``, ``instruction`` ...);
- ``question`` / ``answer``: the text pair;
- ``distractors``: two wrong values of the same attribute, for multiple-choice scoring.
"""

from __future__ import annotations

import codecs
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ssiuu.config.errors import DataError

FIELDS = ("id", "subject", "attribute", "question", "answer", "distractors")
Record = dict[str, Any]


def decode_utf8(data: bytes, path: str | Path, first_line: int = 1) -> str:
    """Decode UTF-8 bytes read from ``path`` whose first line is number ``first_line``.

    A UTF-8 byte-order mark at the start of the file (what many editors and Excel write) is
    dropped. Invalid bytes raise :class:`DataError` naming the file, the line, the column (in
    characters) and the offending byte value, never the text around it.
    """
    if first_line == 1:
        data = data.removeprefix(codecs.BOM_UTF8)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[:exc.start]
        line_start = before.rfind(b"\n") + 1
        line = first_line + before.count(b"\n")
        column = len(before[line_start:].decode("utf-8")) + 1
        raise DataError(f"{path}:{line}: not valid UTF-8 "
                        f"(byte 0x{data[exc.start]:02x} at column {column})") from None


def read_jsonl(path: str | Path) -> list[Record]:
    """Read one JSON object per line; raise :class:`DataError` naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    rows: list[Record] = []
    with path.open("rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            line = decode_utf8(raw, path, first_line=lineno)
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                kind = type(row).__name__
                raise DataError(f"{path}:{lineno}: expected a JSON object, got {kind}")
            rows.append(row)
    return rows


def write_jsonl(rows: Iterable[Record], path: str | Path) -> None:
    """Write records one per line, keys in schema order, UTF-8, deterministic."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            ordered = {key: row[key] for key in FIELDS if key in row}
            handle.write(json.dumps(ordered, ensure_ascii=False, sort_keys=False) + "\n")


def sha256_file(path: str | Path) -> str:
    """The sha256 hex digest of a file's bytes (data lineage for records)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
