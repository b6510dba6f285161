"""The core every pattern builds on: nothing here knows about a pattern, and nothing needs Jupyter.

* :mod:`natsdemo.core.errors`: the errors a user can fix (``UsageError``, ``Unavailable``);
* :mod:`natsdemo.core.names`: subject-token checks, and what a JetStream ack subject says;
* :mod:`natsdemo.core.connect`: servers and TLS from flags or the environment, bounded first connect,
  outages logged;
* :mod:`natsdemo.core.streams`: create-if-missing for streams, transient-failure retries, replicas;
* :mod:`natsdemo.core.publish`: :func:`~natsdemo.core.publish.publish_acked`, the one way to publish
  something that must not be lost;
* :mod:`natsdemo.core.cron` and :mod:`natsdemo.core.timers`: when things are due (pure computation);
* :mod:`natsdemo.core.service`: the one service runtime (connect, log, readiness line, signals, drain).

This package imports nothing from the patterns or the workbook above it.
"""
