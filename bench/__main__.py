"""``python -m bench [KEY ...]``: the training benchmarks the manifest declares
(``Problem.bench``), one after the other, each in its own process; with no KEY, all of
them. ``make bench`` runs them all and ``make bench-<key>`` one."""
from __future__ import annotations

import subprocess
import sys

from hw10kit import manifest


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    declared = {p.key: p for p in manifest.PROBLEMS if p.bench}
    unknown = [k for k in argv if k not in declared]
    if unknown:
        print(f"python -m bench: no benchmark for {', '.join(unknown)}; declared: {', '.join(declared)}",
              file=sys.stderr)
        return 2
    for key in argv or list(declared):
        problem = declared[key]
        print(f"== bench-{key}: {problem.bench} (target: {problem.bench_target})", flush=True)
        code = subprocess.call([sys.executable, "-m", problem.bench])
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
