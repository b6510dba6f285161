"""Errors a user can fix: the CLI prints them as one line, the notebooks show them in plain words.

Defined in notebooks/02_cron_ticks.ipynb
"""


class UsageError(ValueError):
    """Bad input (a flag, a cron expression, an id...). The message says what to do instead."""


class NatsdemoError(RuntimeError):
    """A failure whose message already says what happened and what to do (printed as it is)."""


class PlaintextRefused(NatsdemoError):
    """TLS was asked for, but the server offers none: nats-py would have connected in plain text."""


class ReplicasError(NatsdemoError):
    """A stream cannot have the number of replicas asked for; never silently fewer."""


class Unavailable(NatsdemoError):
    """JetStream did not acknowledge a publish in time (no stream leader, no quorum, no server).

    No acknowledgement is ever invented: the message says whether the publish may still have been
    stored, and how to retry safely.
    """
