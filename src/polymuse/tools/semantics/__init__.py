"""Semantic review: the descriptor bank, audio features for texture, descriptor scoring, search."""
