"""The evaluation stage (workflow/rules/evaluation.smk): mIoU, CAM scores, quality gates, the summary."""
