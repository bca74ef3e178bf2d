"""A ninth hub is its folders plus its schemas: the example Note hub
(tests/ninth_hub/example: hubs/note, projections/note, schemas/note) is added to a
copy of the tree, and with no edit anywhere else the shared machinery discovers
it — processor spec, command and event schemas, topics, CLI verbs, read model,
generated hub reference — and the layer rule still holds. Then the copy is
removed. The figures README "Adding a hub" quotes are printed here (`-s`)."""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "tests" / "ninth_hub" / "example"
TREE = ("base", "hubs", "infra", "poseidon", "projections", "sagas", "schemas", "spokes", "docs", "pyproject.toml")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc")


def _copy_tree(into: Path) -> None:
    for name in TREE:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, into / name, ignore=IGNORED)
        else:
            shutil.copy2(source, into / name)


def _run(copy: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, *args], cwd=copy, env=env, capture_output=True, text=True, timeout=120)


def _changed_files(left: Path, right: Path) -> list[str]:
    """Files present in both trees whose content differs (recursively)."""
    changed, compare = [], [filecmp.dircmp(left, right, ignore=["__pycache__"])]
    while compare:
        node = compare.pop()
        _, mismatch, errors = filecmp.cmpfiles(node.left, node.right, node.common_files, shallow=False)
        changed += [str(Path(node.left, f).relative_to(left)) for f in mismatch + errors]
        compare += node.subdirs.values()
    return sorted(changed)


def test_a_ninth_hub_is_its_folders_plus_its_schemas(tmp_path):
    before, after = tmp_path / "before", tmp_path / "after"
    _copy_tree(before)
    _copy_tree(after)
    added = sorted(p for p in EXAMPLE.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    for path in added:
        target = after / path.relative_to(EXAMPLE)
        assert not target.exists(), f"the example must only add files, but {target.relative_to(after)} exists"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)

    probe = _run(after, str(ROOT / "tests" / "ninth_hub" / "probe.py"))
    assert probe.returncode == 0, probe.stderr[-3000:]
    seen = json.loads(probe.stdout.strip().splitlines()[-1])
    assert "note" in seen["hubs"] and len(seen["hubs"]) == 10
    assert seen["event"] == "poseidon.note.NoteOpened" and not seen["rejected"]
    assert seen["statements"] == 1
    assert seen["topics"] == ["note.command-results", "note.commands", "note.commands.dlq", "note.events", "note.events.dlq"]
    assert "open" in seen["cli_help"] and "edit" in seen["cli_help"]
    assert seen["docs_has_note"]

    # The hub reference is generated: regenerating it is the only change to a file that existed.
    regenerated = _run(after, "-m", "poseidon.docs")
    assert regenerated.returncode == 0, regenerated.stderr[-3000:]
    assert _changed_files(before, after) == ["docs/hubs.md"]

    layers = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    lint = subprocess.run(
        [layers], cwd=after, env={**os.environ, "PYTHONPATH": str(after)}, capture_output=True, text=True, timeout=300
    )
    assert lint.returncode == 0, lint.stdout[-3000:]

    lines = sum(len(p.read_text().splitlines()) for p in added)
    folders = sorted({str(p.relative_to(EXAMPLE).parents[-2]) + "/" + p.relative_to(EXAMPLE).parts[1] for p in added})
    print(f"\nninth hub: {len(added)} files, {lines} lines in {', '.join(folders)}; 0 edits elsewhere (docs/hubs.md regenerated)")
    shutil.rmtree(after)
    assert not after.exists()
