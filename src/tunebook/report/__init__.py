"""The HTML report and the tracking table: draws what :mod:`tunebook.analysis` computes."""

from __future__ import annotations

from tunebook.report.html import Report, build_report, default_report_path, write_report

__all__ = ["Report", "build_report", "default_report_path", "write_report"]
