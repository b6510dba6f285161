"""natsdemo: the code behind the NATS workbook (TLS, cron ticks, tick-triggered draining, reservation timeouts).

Each module is one concept and names the notebook that teaches it.
"""

__version__ = "0.1.0"
