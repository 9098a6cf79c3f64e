"""Audio encoders: pretrained networks that turn audio into tags and embeddings."""
