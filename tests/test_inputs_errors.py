"""Input files that are not valid UTF-8 fail with a :class:`DataError` naming the file, the
line, the column and the byte value, never the text around it."""

import pytest

from ssiuu.config.errors import DataError
from ssiuu.data.records import read_jsonl
from ssiuu.data.requests import read_request

SECRET = "Zorblax"


def test_jsonl_with_an_invalid_byte_names_file_line_and_column(tmp_path):
    path = tmp_path / "facts.jsonl"
    path.write_bytes(b'{"id": "f1", "answer": "ok"}\n'
                     + '{"id": "f2", "answer": "\u00e9'.encode() + b"\xff"
                     + f'{SECRET}"}}\n'.encode())
    with pytest.raises(DataError) as info:
        read_jsonl(path)
    message = str(info.value)
    assert message == f"{path}:2: not valid UTF-8 (byte 0xff at column 26)"
    assert SECRET not in message


def test_request_with_an_invalid_byte_names_file_line_and_column(tmp_path):
    path = tmp_path / "r.json"
    path.write_bytes(b'{"request_id": "r",\n "received": "2026-11-01",\n'
                     + b' "subjects": ["\xc3(' + f'{SECRET}"]}}\n'.encode())
    with pytest.raises(DataError) as info:
        read_request(path)
    message = str(info.value)
    assert message == f"{path}:3: not valid UTF-8 (byte 0xc3 at column 16)"
    assert SECRET not in message
