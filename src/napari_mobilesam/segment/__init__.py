"""Instance segmentation from micro-sam's decoder maps: AIS (watershed) and APG (prompts for SAM)."""
