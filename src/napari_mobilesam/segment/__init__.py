"""Automatic segmentation: everything on one image, stacks, linking across slices, prompts on stacks."""
