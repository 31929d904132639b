"""Shared mechanics every stage uses: images, labels, the dataset index, atomic output, the training loop, devices."""
