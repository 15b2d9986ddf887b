"""Child process of ``run_bench``: measure one row. ``python -m align3d_rt.eval.bench.worker REQUEST RESULT``."""
from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    from align3d_rt.eval.bench.rows import Row
    from align3d_rt.eval.bench.run import BenchConfig, measure_row
    from align3d_rt.io_utils import write_json_atomic

    request, result = Path(argv[0]), Path(argv[1])
    data = json.loads(request.read_text())
    out = measure_row(Row.from_dict(data["row"]), BenchConfig.from_json(data["config"]), data["loads"])
    if out.get("traceback"):
        print(out["traceback"], file=sys.stderr)
    write_json_atomic(result, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
