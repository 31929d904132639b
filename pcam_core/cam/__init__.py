"""The CAM stage (workflow/rules/cam.smk): the (P)CAM network, its loss, training and multi-scale export."""
