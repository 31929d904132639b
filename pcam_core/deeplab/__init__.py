"""The DeepLab stage (workflow/rules/deeplab.smk): DeepLabv3+, its training, and prediction."""
