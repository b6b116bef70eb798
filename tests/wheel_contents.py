"""``python tests/wheel_contents.py WHEEL``: the wheel holds the library only, all of it.

Run by ``nox -s wheel``; prints the wheel's files. Fails if a module of ``tinycnn_xp/`` (a
subpackage, say) is missing, or if anything else (benchmarks, tests, backends) came along.
"""

import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(wheel: str) -> int:
    names = zipfile.ZipFile(wheel).namelist()
    print("\n".join(names))
    package = {f"tinycnn_xp/{p.relative_to(ROOT / 'tinycnn_xp').as_posix()}"
               for p in (ROOT / "tinycnn_xp").rglob("*") if p.suffix in (".py", ".typed")}
    missing = sorted(package - set(names))
    foreign = sorted(n for n in names if not n.startswith(("tinycnn_xp/", "tinycnn_xp-")))
    if missing or foreign:
        print(f"wheel {wheel}: missing {missing}, not the library {foreign}", file=sys.stderr)
        return 1
    print(f"wheel {Path(wheel).name}: {len(names)} files, the whole package and nothing else")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
