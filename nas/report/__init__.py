"""Reports on studies: data frames first (frames), plotly figures drawn from them (figures),
self-contained HTML pages (html)."""

from nas.report.frames import (
    Comparison,
    Importances,
    compare_frames,
    edf_frame,
    evaluated,
    front_frame,
    history_frame,
    importance_data,
    trials_frame,
)
from nas.report.html import compare_html, report_html, write_page

__all__ = ["Comparison", "Importances", "compare_frames", "compare_html", "edf_frame",
           "evaluated", "front_frame", "history_frame", "importance_data", "report_html",
           "trials_frame", "write_page"]
