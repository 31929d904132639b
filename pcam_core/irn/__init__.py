"""The IRNet stage (workflow/rules/irn.smk): IR labels, the boundary network, the random walk, pseudo labels."""
