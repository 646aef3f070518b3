"""Evaluators: graders and the eval runner shared by training-time evaluation and standalone scoring."""
