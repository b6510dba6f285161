# Exercise 04.3: the timers benchmark, quick version.
# Answer: the single heap costs a small tuple per pending reservation; a task per timer costs a
# coroutine, a task object and a timer handle each, several times more (the full run's README
# figures: 232 MB against 1,731 MB for a million). The quick run's numbers are smaller but show
# the same ratio.
import json
import sys
import tempfile
from pathlib import Path

out = Path(tempfile.mkdtemp()) / "timers.json"
bench = await asyncio.create_subprocess_exec(sys.executable, "-m", "natsdemo", "bench", "timers", "--quick",
                                             "--json", str(out), stdout=asyncio.subprocess.DEVNULL)
assert await asyncio.wait_for(bench.wait(), 300) == 0
figures = {f["name"]: f for f in json.loads(out.read_text())["figures"]}
heap, tasks = figures["RSS, one heap scheduler"]["value"], figures["RSS, task per timer (baseline)"]["value"]
print(f"heap {heap:.1f} MB, task per timer {tasks:.1f} MB, ratio {heap / tasks:.2f}")
assert heap < tasks
assert {"RSS ratio scheduler / baseline", "start-up replay rate", "fire lateness p99", "@at fire lateness p99"} <= set(figures)
assert all(f["value"] == f["value"] for f in figures.values())  # every figure was measured (no NaN)
