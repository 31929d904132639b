""""What's the point" (Bearman et al.): a segmentation network trained from image labels + clicks."""
