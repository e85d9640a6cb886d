"""The report stage's parts of the report: none of its own. The report stage writes the report; its sections are
the other stages' (their section.py) and the report's own (studykit.report.sections)."""

SUMMARY: tuple = ()
SECTIONS: dict = {}
