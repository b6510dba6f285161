# Exercise 05.3: a third drain worker started with --ack-wait 1.
# Answer: the consumer is shared, and the last worker to start sets its configuration, so every
# worker now has a one-second ack_wait: items a slow worker holds longer than that are given to
# another worker and processed twice. A fleet must agree on its consumer settings (notebook 03).
w3 = ServiceProcess("drain-w3", ["drain", "--name", "eod", "--ack-wait", "1", "--work-ms", "5"], env,
                    ready="^draining")
w3.start()
await w3.await_ready(60)
shared = (await js.consumer_info("EOD_QUEUE", "eod")).config.ack_wait
await w3.astop()
dash.kill_service("drain-w1")  # restart one of the usual workers: it sets the usual ack_wait back
await dash.restart_service("drain-w1")
await services["drain-w1"].await_ready(60)
restored = (await js.consumer_info("EOD_QUEUE", "eod")).config.ack_wait
print("the shared consumer's ack_wait is now", shared, "s for every worker")
print("restored by restarting drain-w1:", restored, "s")
assert shared == 1 and restored > 1
