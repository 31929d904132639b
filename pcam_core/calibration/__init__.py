"""The calibration stage (workflow/rules/calibration.smk): thresholds chosen on masked train images."""
