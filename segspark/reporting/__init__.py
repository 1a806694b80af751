"""The report's parts: data gathering, analysis, figures and HTML (segspark report)."""
