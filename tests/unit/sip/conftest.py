"""Bags built byte by byte, so that each test controls exactly what is wrong with one."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

BagFactory = Callable[..., Path]


def write_bag(
    root: Path,
    files: dict[str, bytes],
    *,
    algorithms: Iterable[str] = ("sha256", "sha512"),
    version: str = "1.0",
    info: dict[str, str] | None = None,
    oxum: bool = True,
    manifest_names: dict[str, str] | None = None,
    tagmanifest: bool = False,
) -> Path:
    """Write a valid bag; ``manifest_names`` maps a payload path to the text its manifest line uses.

    Paths in ``files`` are relative to ``data/``.
    """
    names = manifest_names or {}
    data = root / "data"
    data.mkdir(parents=True)
    for rel, content in files.items():
        target = data / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    (root / "bagit.txt").write_bytes(
        f"BagIt-Version: {version}\nTag-File-Character-Encoding: UTF-8\n".encode()
    )
    for alg in algorithms:
        lines = [
            f"{hashlib.new(alg, content).hexdigest()}  {names.get(rel, 'data/' + rel)}\n"
            for rel, content in files.items()
        ]
        (root / f"manifest-{alg}.txt").write_text("".join(lines), encoding="utf-8")
    tags = dict(info or {})
    if oxum:
        tags["Payload-Oxum"] = f"{sum(len(c) for c in files.values())}.{len(files)}"
    if tags:
        (root / "bag-info.txt").write_text(
            "".join(f"{k}: {v}\n" for k, v in tags.items()), encoding="utf-8"
        )
    if tagmanifest:
        tag_files = sorted(p.name for p in root.iterdir() if p.is_file())
        (root / "tagmanifest-sha256.txt").write_text(
            "".join(
                f"{hashlib.sha256((root / n).read_bytes()).hexdigest()} {n}\n" for n in tag_files
            ),
            encoding="utf-8",
        )
    return root


@pytest.fixture
def make_bag(tmp_path: Path) -> BagFactory:
    counter = iter(range(1_000_000))

    def factory(files: dict[str, bytes] | None = None, **kwargs: object) -> Path:
        content = files if files is not None else {"a.txt": b"alpha\n", "sub/b.bin": b"\x00" * 5000}
        return write_bag(tmp_path / f"bag{next(counter)}", content, **kwargs)  # type: ignore[arg-type]

    return factory


def tree_digest(root: Path) -> dict[str, tuple[int, str]]:
    """Every file under ``root`` with its mode and content digest, to prove nothing changed."""
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        content = path.read_bytes() if path.is_file() and not path.is_symlink() else b""
        out[str(path.relative_to(root))] = (st.st_mode, hashlib.sha256(content).hexdigest())
    return out
