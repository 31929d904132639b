"""The data stage (workflow/rules/data.smk): demo and example datasets, downloads, readers, the index, shards."""
