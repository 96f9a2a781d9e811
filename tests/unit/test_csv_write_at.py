"""The CSV exporter's one file write (services/router/destinations/csv.py `write_at`): the
file becomes exactly its first `offset` bytes followed by the new rows, whatever a crashed
sync left after them; a missing file and its directory are created; a file shorter than
the offset (lost) is left alone for a rebuild."""

from __future__ import annotations

from pathlib import Path

from services.router.destinations.csv import write_at


def test_a_new_file_and_its_directory_are_created(tmp_path: Path) -> None:
    path = tmp_path / "acme" / "leads.csv"
    write_at(path, 0, b"id\na\n")
    assert path.read_bytes() == b"id\na\n"


def test_rows_after_the_offset_are_replaced_not_doubled(tmp_path: Path) -> None:
    path = tmp_path / "leads.csv"
    write_at(path, 0, b"id\na\n")
    path.write_bytes(path.read_bytes() + b"b\nc-half")  # a sync that crashed before recording
    write_at(path, len(b"id\na\n"), b"b\nc\n")
    assert path.read_bytes() == b"id\na\nb\nc\n"


def test_a_file_shorter_than_the_offset_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "leads.csv"
    assert write_at(path, 0, b"id\n")
    assert not write_at(path, 10, b"a\n")
    assert path.read_bytes() == b"id\n"
