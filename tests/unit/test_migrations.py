"""Schema migrations as versioned `.sql` files: loaded in order, applied as the in-code
tuple was (`PRAGMA user_version`), producing the schema the stores had before the move,
and shipped with the package."""

from __future__ import annotations

import fnmatch
import json
import sqlite3
import sys
import tomllib
import uuid
from pathlib import Path

import pytest

from services.enricher.cache import CACHE_MIGRATIONS
from shared.store import MIGRATIONS, connect, load_migrations, migrate, statements

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOTS = ROOT / "tests" / "fixtures" / "schema"
# (migrations, their folder, the package that ships them, the schema snapshot): the
# snapshots are `sqlite_master` of a database migrated by the MIGRATIONS tuples that
# lived in shared/store.py and services/enricher/cache.py before the files.
# How many files the snapshots cover: later migrations are newer than the move.
SNAPSHOT_VERSIONS = {"status_store": 7, "provider_cache": 3}
STORES = {
    "status_store": (MIGRATIONS, ROOT / "shared" / "migrations", "shared"),
    "provider_cache": (
        CACHE_MIGRATIONS,
        ROOT / "services/enricher/migrations",
        "services.enricher",
    ),
}


def schema(conn: sqlite3.Connection) -> list[list[str]]:
    rows = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name")
    return [list(row) for row in rows]


def migrated(scripts: tuple[str, ...], upto: int | None = None) -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    migrate(conn, scripts[:upto])
    return conn


@pytest.mark.parametrize("name", sorted(STORES))
def test_the_files_produce_the_schema_of_before(name: str) -> None:
    scripts, _, _ = STORES[name]
    expected = json.loads((SNAPSHOTS / f"{name}.json").read_text())
    conn = migrated(scripts, SNAPSHOT_VERSIONS[name])
    assert schema(conn) == expected
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SNAPSHOT_VERSIONS[name]


@pytest.mark.parametrize("name", sorted(STORES))
def test_a_store_at_any_version_upgrades_to_the_same_schema(name: str) -> None:
    scripts, _, _ = STORES[name]
    fresh = schema(migrated(scripts))
    for version in range(1, len(scripts)):
        conn = migrated(scripts, version)
        assert conn.execute("PRAGMA user_version").fetchone()[0] == version
        migrate(conn, scripts)
        assert schema(conn) == fresh, f"upgraded from version {version}"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(scripts)


@pytest.mark.parametrize("name", sorted(STORES))
def test_scripts_are_the_files_in_number_order(name: str) -> None:
    scripts, folder, _ = STORES[name]
    files = sorted(folder.glob("*.sql"))
    assert [f.name[:4] for f in files] == [f"{n:04d}" for n in range(1, len(files) + 1)]
    assert scripts == tuple(f.read_text(encoding="utf-8") for f in files)


def test_an_up_to_date_store_is_not_migrated_again(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    connect(path).close()
    conn = connect(path)  # a second start: nothing re-runs (it would fail on ALTER TABLE)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    conn.close()


def test_comments_are_not_statements() -> None:
    script = "-- a note; with a semicolon\nCREATE TABLE a (x INTEGER);\n  -- and another\n"
    assert [s.strip() for s in statements(script)] == ["CREATE TABLE a (x INTEGER)"]


@pytest.mark.parametrize("name", sorted(STORES))
def test_the_package_ships_every_migration(name: str) -> None:
    """pyproject's package data covers every file, so an installed package finds them."""
    _, folder, package = STORES[name]
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"][package]
    package_dir = ROOT.joinpath(*package.split("."))
    for file in folder.glob("*.sql"):
        relative = file.relative_to(package_dir).as_posix()
        assert any(fnmatch.fnmatch(relative, p) for p in patterns), relative


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """An importable package of its own with an empty migrations folder."""
    name = f"migrations_{uuid.uuid4().hex}"
    (tmp_path / name / "migrations").mkdir(parents=True)
    (tmp_path / name / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    return name, tmp_path / name / "migrations"


def test_files_load_by_number_not_by_listing_order(package: tuple[str, Path]) -> None:
    name, folder = package
    for file in (
        "0002_b.sql",
        "0010_j.sql",
        "0001_a.sql",
        *(f"{n:04d}_x.sql" for n in range(3, 10)),
    ):
        (folder / file).write_text(file)
    (folder / "README.md").write_text("not a migration")
    loaded = load_migrations(name)
    assert loaded[:2] == ("0001_a.sql", "0002_b.sql")
    assert loaded[-1] == "0010_j.sql"
    assert len(loaded) == 10


@pytest.mark.parametrize(
    ("files", "error"),
    [
        (("0001_a.sql", "0003_c.sql"), "no gaps"),
        (("0002_b.sql",), "no gaps"),
        (("0001_a.sql", "0001_again.sql"), "two migrations are numbered 0001"),
        (("0001_a.sql", "2_b.sql"), "not named NNNN_what.sql"),
    ],
)
def test_a_missing_doubled_or_misnamed_file_stops_the_start(
    package: tuple[str, Path], files: tuple[str, ...], error: str
) -> None:
    name, folder = package
    for file in files:
        (folder / file).write_text("SELECT 1;")
    with pytest.raises(ValueError, match=error):
        load_migrations(name)
