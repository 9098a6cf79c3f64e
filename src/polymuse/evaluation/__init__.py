"""Evaluation harnesses: accuracy of each analysis against exact ground truth."""
