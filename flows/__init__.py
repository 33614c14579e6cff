"""Prefect flows chaining bmpipe's stages: one flow per slide, one per folder (batch), the lab inbox deployment."""
