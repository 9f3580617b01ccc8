"""The shared kernel: settings, the event/catalogue schema, errors, logging and pseudonymisation.

Everything else may import it; it imports nothing of ours (see docs/architecture.md, "Layers").
"""
