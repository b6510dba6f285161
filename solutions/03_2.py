# Exercise 03.2: two CLI workers and `--enqueue`, as you would run them in three terminals.
# Answer: both workers bind to the same durable consumer, so one tick makes both drain and the
# server splits the items between them; each item is processed once. (2,000 items, not 10,000.)
import sys

await stop_leftovers()
logs = {w: str(Path(tempfile.mkdtemp()) / f"{w}.log") for w in ("term-1", "term-2")}
procs = {w: await start_cli_worker(srv.url, NAME, w, log, "--work-ms", "1") for w, log in logs.items()}
fill = await asyncio.create_subprocess_exec(sys.executable, "-m", "natsdemo", "drain", "--name", NAME,
                                            "--server", srv.url, "--enqueue", "2000",
                                            stdout=asyncio.subprocess.DEVNULL)
assert await asyncio.wait_for(fill.wait(), 60) == 0
await publish_tick(js, NAME)
await wait_drained(timeout=60)
split = {w: len(read_processed_log(log)) for w, log in logs.items()}
for proc in procs.values():
    await proc.astop()
print(split)
assert sum(split.values()) >= 2000 and min(split.values()) > 0
