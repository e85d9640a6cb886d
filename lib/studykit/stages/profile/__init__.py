"""The profile stage: where a decode step's time goes (inside the model's forward or outside it) and what a token
costs in energy."""
