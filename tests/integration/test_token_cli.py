"""``computethis token``: manages tenants' tokens without loading Flask or Dask."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.tokens import ADMIN_TENANT, TokenStore

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("flask", "flask_restful", "werkzeug", "dask", "distributed")

_CREATE_THEN_LIST_IMPORTS = """
import json, sys
from gateway.cli import main
main(["token", "create", "alice", "--save-dir", sys.argv[1]])
main(["token", "list", "--save-dir", sys.argv[1]])
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def test_token_commands_import_neither_flask_nor_dask(tmp_path: Path) -> None:
    ran = subprocess.run(
        [sys.executable, "-c", _CREATE_THEN_LIST_IMPORTS, str(tmp_path / "save")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    token, listed, imported = ran.stdout.splitlines()
    assert len(token) > 30 and listed == "alice"
    assert not set(json.loads(imported)) & set(HEAVY)


def test_token_create_list_revoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save_dir = str(tmp_path / "save")
    assert main(["token", "create", "bob", "--save-dir", save_dir]) == 0
    token = capsys.readouterr().out.strip()
    assert TokenStore(tmp_path / "save" / "jobs.sqlite3").tenant_for(token) == "bob"
    assert main(["token", "list", "--save-dir", save_dir]) == 0
    assert capsys.readouterr().out.split() == ["bob"]
    assert main(["token", "revoke", "bob", "--save-dir", save_dir]) == 0
    assert TokenStore(tmp_path / "save" / "jobs.sqlite3").tenant_for(token) is None


def test_the_admin_tenant_name_is_not_for_tenants(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["token", "create", ADMIN_TENANT, "--save-dir", str(tmp_path / "save")]) == 1
    assert repr(ADMIN_TENANT) in capsys.readouterr().err
