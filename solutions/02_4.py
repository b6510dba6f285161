# Exercise 02.4: @daily in Australia/Sydney, seen from your own zone.
# Answer: midnight in Sydney is 13:00 or 14:00 UTC the day before (depending on DST there);
# parse_cron gives the UTC instants, and astimezone() shows them on your wall clock.
await install_server_schedule(js, "sydney", "@daily", "Australia/Sydney")
spec = parse_cron("@daily", "Australia/Sydney")
mine = datetime.now().astimezone().tzinfo
for t in spec.next_times(2):
    print(t.astimezone(ZoneInfo("Australia/Sydney")).isoformat(), "=", t.astimezone(mine).isoformat())
    assert t.astimezone(ZoneInfo("Australia/Sydney")).hour == 0
await remove_server_schedule(js, "sydney")
