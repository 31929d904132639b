"""The report (workflow/rules/report.smk): figures, the qualitative grid, run costs and the manifest."""
