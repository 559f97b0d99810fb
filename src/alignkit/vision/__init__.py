"""Vision, audio and text-to-image alignment losses and metrics as functions of the tensors they consume."""
