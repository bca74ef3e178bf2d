"""infra.migrations.migration_files: the naming rule (NNNN_<what>.sql) that
orders a read store's migrations, checked without a database."""

from __future__ import annotations

import pytest

from infra.migrations import MigrationError, migration_files
from projections.wallet import PROJECTION


def write(folder, *names):
    for name in names:
        (folder / name).write_text("SELECT 1;\n")


def test_the_wallet_migrations_folder_is_accepted():
    found = migration_files(PROJECTION.migrations)

    assert found[0] == (1, "wallets_and_ledger", PROJECTION.migrations / "0001_wallets_and_ledger.sql")
    versions = [v for v, _, _ in found]
    assert versions == sorted(set(versions))


def test_migrations_come_back_in_version_order_with_their_names(tmp_path):
    write(tmp_path, "0010_add_index.sql", "0002_ledger.sql", "0001_wallets.sql")

    found = migration_files(tmp_path)

    assert [(v, n) for v, n, _ in found] == [(1, "wallets"), (2, "ledger"), (10, "add_index")]
    assert [p.name for _, _, p in found] == ["0001_wallets.sql", "0002_ledger.sql", "0010_add_index.sql"]


def test_files_that_are_not_sql_are_ignored(tmp_path):
    write(tmp_path, "0001_wallets.sql", "README.md", "0002_notes.txt")

    assert [v for v, _, _ in migration_files(tmp_path)] == [1]


def test_an_empty_folder_has_no_migrations(tmp_path):
    assert migration_files(tmp_path) == []


@pytest.mark.parametrize(
    "name",
    [
        "1_wallets.sql",
        "00001_wallets.sql",
        "0001-wallets.sql",
        "0001_Wallets.sql",
        "0001_.sql",
        "wallets.sql",
        "0001_wallets v2.sql",
    ],
)
def test_a_misnamed_migration_is_refused_naming_the_file(tmp_path, name):
    write(tmp_path, "0001_ok.sql", name)

    with pytest.raises(MigrationError, match="NNNN_<what>.sql") as raised:
        migration_files(tmp_path)

    assert name in str(raised.value)


def test_two_migrations_with_the_same_version_are_refused(tmp_path):
    write(tmp_path, "0001_wallets.sql", "0002_ledger.sql", "0002_index.sql")

    with pytest.raises(MigrationError, match="share a version"):
        migration_files(tmp_path)
