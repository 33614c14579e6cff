"""Models: network definitions, verified weight loading and batched inference."""
