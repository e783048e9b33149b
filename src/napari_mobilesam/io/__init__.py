"""Files: images in, labels out (atomic, never over a user's files), resumable work, prompt tables."""
