"""One 2D image through the model: weights, device, preprocessing, prompts, embedding, predictor, session."""
