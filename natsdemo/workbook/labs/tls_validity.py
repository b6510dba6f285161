"""The validity plot of notebook 01: certificate validity windows on a timeline, "now" and rotations.

Defined in notebooks/01_tls_self_signed_ca.ipynb
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import ipywidgets as W
import matplotlib.dates as mdates

from natsdemo import tls
from natsdemo.workbook.widgets import LivePlot


class ValidityPlot:
    """Certificate validity windows as horizontal bars on a date axis, with "now" and rotations marked.

    Defined in notebooks/01_tls_self_signed_ca.ipynb
    """

    def __init__(self, title: str = "Certificate validity", replaces: ValidityPlot | None = None) -> None:
        if replaces is not None:
            replaces.plot.close()
        self.title = title
        self.plot = LivePlot(title=title, xlabel="UTC", figsize=(7, 3))
        self.rotations: list[dt.datetime] = []
        self.certs: dict[str, Any] = {}
        self.current: str | None = None  # the certificate a server presents now
        self.retired: set[str] = set()  # certificates a rotation replaced (drawn grey)

    def show(self, certs: dict[str, Any], at: dt.datetime | None = None, current: str | None = None) -> None:
        """Draw ``certs`` (name -> certificate, :class:`~natsdemo.tls.Issued` or path) as of ``at``.

        ``current`` names the certificate the server presents, which :meth:`rotated` retires.
        """
        self.certs = dict(certs)
        self.current = current or self.current
        at = at or tls.now()
        ax = self.plot.ax
        ax.clear()
        names = list(self.certs)
        for i, name in enumerate(names):
            c = self.certs[name]
            cert = c.cert if isinstance(c, tls.Issued) else c if hasattr(c, "not_valid_after_utc") else tls.load_cert(c)
            start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
            color = "tab:red" if end < at or start > at else "tab:gray" if name in self.retired else "tab:green"
            ax.barh(i, mdates.date2num(end) - mdates.date2num(start), left=mdates.date2num(start), color=color,
                    alpha=0.6)
        ax.set_yticks(range(len(names)), labels=names)
        ax.axvline(mdates.date2num(at), color="black", label="now")
        for k, r in enumerate(self.rotations):
            ax.axvline(mdates.date2num(r), color="tab:blue", linestyle="--", label="rotation" if k == 0 else None)
        ax.xaxis_date()
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d"))
        ax.set_title(self.title)
        ax.legend(loc="lower right", fontsize="small")
        self.plot.redraw()

    def rotated(self, cert: Any, at: dt.datetime | None = None) -> str:
        """Record a rotation to ``cert``: the previous current certificate turns grey, a dashed line marks when.

        Returns the name the new certificate is drawn under.
        """
        if self.current:
            self.retired.add(self.current)
        name = f"server #{len(self.rotations) + 2}"
        self.certs[name] = cert
        self.current = name
        self.rotations.append(at or tls.now())
        self.show(self.certs)
        return name

    @property
    def widget(self) -> W.Widget:
        return self.plot.widget
