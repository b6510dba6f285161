"""natsdemo: the code behind the NATS workbook (TLS, ticks, draining, reservation timeouts, coupons).

Each module is one concept and names the notebook that teaches it.
"""

__version__ = "0.2.0"  # the one version source (pyproject.toml reads it)
