"""Automatic segmentation: everything on one image, stacks, linking across slices, prompts on stacks,
and instance segmentation from micro-sam's decoder maps (AIS watershed, APG prompts)."""
