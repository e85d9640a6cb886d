"""A fake `npu-smi` on PATH for tests: an executable script that replays recorded outputs
(tests/data/ascend/), one per call in order, the last one repeating, with a chosen exit code."""

from __future__ import annotations

import shlex
from pathlib import Path


def install_fake_npu_smi(bin_dir: Path, outputs: list[Path], exit_code: int = 0, stream: str = "stdout") -> Path:
    """Write bin_dir/npu-smi. Each call prints the next file of `outputs` to `stream` and exits `exit_code`; the
    calls are counted in bin_dir/npu-smi.calls (one line per call, with its arguments)."""
    if not outputs:
        raise ValueError("install_fake_npu_smi needs at least one recorded output")
    if stream not in ("stdout", "stderr"):
        raise ValueError(f"stream {stream!r}: allowed stdout, stderr")
    bin_dir.mkdir(parents=True, exist_ok=True)
    calls = bin_dir / "npu-smi.calls"
    files = " ".join(shlex.quote(str(Path(p).resolve())) for p in outputs)
    redirect = ">&2" if stream == "stderr" else ""
    script = bin_dir / "npu-smi"
    script.write_text(f"""#!/bin/sh
files="{files}"
echo "$*" >> {shlex.quote(str(calls))}
n=$(wc -l < {shlex.quote(str(calls))})
set -- $files
i=1
for f in "$@"; do
    last="$f"
    if [ "$i" -eq "$n" ]; then break; fi
    i=$((i + 1))
done
cat "$last" {redirect}
exit {int(exit_code)}
""")
    script.chmod(0o755)
    return script


def calls(bin_dir: Path) -> list[str]:
    path = bin_dir / "npu-smi.calls"
    return path.read_text().splitlines() if path.exists() else []
