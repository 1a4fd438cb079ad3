"""Controller -> worker processes. Hydra runs only in the controller."""
