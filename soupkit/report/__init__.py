"""Reports of a search: polars tables, figures, one offline HTML page, optuna-dashboard notes.

Importing this package is instant; polars, matplotlib and optuna are imported where used.
"""

from soupkit.report.build import Report, write_report
from soupkit.report.tables import StudyFrames, collect_study, top_trials_table, trials_frame

__all__ = ["Report", "StudyFrames", "collect_study", "top_trials_table", "trials_frame", "write_report"]
